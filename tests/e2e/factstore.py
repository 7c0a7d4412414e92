"""What the e2e modules with several image-gate replicas share: the ImageFact CRD, a fresh Lease, a start-all.

The modules that share facts through ImageFacts (shared facts, fair lookups, the store without RBAC)
each install the ImageFact CRD for themselves and remove it afterwards, so the other modules'
image-gates keep their facts in memory; each starts its replicas with no Lease left from before.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import ControlPlane

from cloudsim.catalogue import Catalogue
from tests.e2e.imagegate import (
    CHART_DIR,
    IMAGE_GATE_NAMESPACE,
    CloudSim,
    ImageGate,
    Kube,
    PolicyFactory,
    admission_review,
    established_crd,
    new_image_gate,
    pod_manifest,
    scoped_policy,
    start_cloudsim,
)

FACT_CRD_FILE = CHART_DIR / "crds" / "imagegate.io_imagefacts.yaml"
FACT_CRD_NAME = "imagefacts.imagegate.io"


@pytest.fixture(scope="module", name="fact_crd")
def fact_crd_fixture(kube: Kube, crd: dict[str, Any]) -> Iterator[None]:
    """The ImageFact CRD, Established; deleted after the module (other modules' image-gates keep to memory)."""
    kube.kubectl("apply", "--server-side", "-f", str(FACT_CRD_FILE))
    with established_crd(kube, FACT_CRD_NAME):
        yield


def without_leader(kube: Kube) -> None:
    """The image-gate namespace exists and holds no Lease from an earlier module: the replicas elect afresh."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IMAGE_GATE_NAMESPACE}})
    kube.kubectl("delete", "lease", "image-gate", "-n", IMAGE_GATE_NAMESPACE, "--ignore-not-found", check=False)


@contextlib.contextmanager
def all_running(gates: Sequence[ImageGate]) -> Iterator[list[ImageGate]]:
    """Start every replica (each ready before the next starts); stop them all afterwards, whatever happened."""
    try:
        for gate in gates:
            gate.start()
        yield list(gates)
    finally:
        for gate in gates:
            gate.stop()


@dataclass(frozen=True)
class FactSharingReplicas:
    """Starts image-gate replicas that share facts through ImageFacts (the CRD is installed) and one Lease."""

    control_plane: ControlPlane
    kube: Kube
    catalogue: Catalogue
    tmp_path_factory: pytest.TempPathFactory

    @contextlib.contextmanager
    def running(
        self, sim: CloudSim, *, prefix: str, count: int = 2, env: Mapping[str, str] | None = None
    ) -> Iterator[list[ImageGate]]:
        """``count`` replicas against ``sim``, electing afresh, with ``env`` added to each one's environment."""
        without_leader(self.kube)
        gates = [
            new_image_gate(self.tmp_path_factory.mktemp(f"{prefix}{n}"), self.control_plane, sim, self.catalogue)
            for n in range(count)
        ]
        for gate in gates:
            gate.process.env.update(env or {})
        with all_running(gates) as running:
            yield running


@pytest.fixture(scope="module", name="fact_sharing_replicas")
def fact_sharing_replicas_fixture(
    control_plane: ControlPlane,
    kube: Kube,
    fact_crd: None,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> FactSharingReplicas:
    """What a module needs to start replicas that share facts; the ImageFact CRD stays for the module."""
    return FactSharingReplicas(control_plane, kube, catalogue, tmp_path_factory)


@contextlib.contextmanager
def quota_enforcing_cloudsim(workdir: Path, hss_rate: str) -> Iterator[CloudSim]:
    """cloudsim answering 429 beyond ``hss_rate`` HSS calls (``calls/seconds``); terminated afterwards."""
    sim = start_cloudsim(workdir, hss_rate=hss_rate)
    try:
        yield sim
    finally:
        sim.process.terminate()


def deny_unresolved(kube: Kube, name: str, namespace: str, images: str) -> PolicyFactory:
    """Apply an Enforce policy over ``images`` in ``namespace`` that needs every base OS resolved.

    Windows is denied and an unresolved image is denied, so a review is allowed only once its facts
    are known. Returns the factory: leaving ``with`` it (or its ``delete_all``) removes the policy.
    """
    spec = {
        "mode": "Enforce",
        "match": {"images": [images]},
        "baseImage": {"deniedOS": [{"name": "Windows"}]},
        "onUnresolved": "Deny",
    }
    factory = PolicyFactory(kube)
    factory.apply(scoped_policy(name, namespace, spec), wait=False)
    return factory


def review_new_pod(gate: ImageGate, namespace: str, image: str) -> dict[str, Any]:
    """``gate``'s answer to a new pod of ``image`` in ``namespace`` (a fresh name each time)."""
    pod = pod_manifest(f"p-{uuid.uuid4().hex[:8]}", namespace, image)
    return gate.review("pods", admission_review(pod))


def allowed(gate: ImageGate, namespace: str, image: str) -> bool:
    """Whether ``gate`` admits a new pod of ``image`` in ``namespace``."""
    return bool(review_new_pod(gate, namespace, image)["allowed"])
