"""What the e2e modules with several image-gate replicas share: the ImageFact CRD, a fresh Lease, a start-all.

The modules that share facts through ImageFacts (shared facts, fair lookups, the store without RBAC)
each install the ImageFact CRD for themselves and remove it afterwards, so the other modules'
image-gates keep their facts in memory; each starts its replicas with no Lease left from before.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.e2e.imagegate import (
    CHART_DIR,
    IMAGE_GATE_NAMESPACE,
    ImageGate,
    Kube,
    PolicyFactory,
    admission_review,
    pod_manifest,
    scoped_policy,
)

FACT_CRD_FILE = CHART_DIR / "crds" / "imagegate.io_imagefacts.yaml"
FACT_CRD_NAME = "imagefacts.imagegate.io"


@pytest.fixture(scope="module", name="fact_crd")
def fact_crd_fixture(kube: Kube, crd: dict[str, Any]) -> Iterator[None]:
    """The ImageFact CRD, Established; deleted after the module (other modules' image-gates keep to memory)."""
    kube.kubectl("apply", "--server-side", "-f", str(FACT_CRD_FILE))
    kube.kubectl("wait", "--for=condition=Established", f"crd/{FACT_CRD_NAME}", "--timeout=60s")
    try:
        yield
    finally:
        kube.kubectl("delete", "crd", FACT_CRD_NAME, "--ignore-not-found", "--timeout=60s", check=False)


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


def deny_unresolved(kube: Kube, name: str, namespace: str, images: str) -> PolicyFactory:
    """Apply an Enforce policy over ``images`` in ``namespace`` that needs every base OS resolved.

    Windows is denied and an unresolved image is denied, so a review is allowed only once its facts
    are known. Returns the factory, whose ``delete_all`` removes the policy.
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


def allowed(gate: ImageGate, namespace: str, image: str) -> bool:
    """Whether ``gate`` admits a new pod of ``image`` in ``namespace``."""
    pod = pod_manifest(f"p-{uuid.uuid4().hex[:8]}", namespace, image)
    return bool(gate.review("pods", admission_review(pod))["allowed"])
