"""The ImageFact store unwritable: image-gate's service account may read ImageFacts but not write them.

image-gate runs as a service account whose ClusterRole lacks the ImageFact writes (as after an RBAC
mistake, or a policy engine that removed them). It must still admit what it can resolve, through
its in-process cache and its own cloud calls, and say that it is degraded (log line and metric).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ControlPlane

from cloudsim.catalogue import Catalogue
from tests.e2e.factstore import deny_unresolved, review_new_pod, without_leader
from tests.e2e.imagegate import (
    CORE_RULES,
    IMAGE_GATE_NAMESPACE,
    CloudSim,
    ImageGate,
    Kube,
    cluster_role_account,
    image_gate_as,
)

ACCOUNT = "image-gate-read-only-facts"
IMAGE = "swr.cn-north-4.myhuaweicloud.com/demo/worker:3.1.0"


def rbac_without_fact_writes() -> list[dict[str, Any]]:
    rules = [
        *CORE_RULES,
        # Read, but neither create nor patch: the store cannot be written.
        {"apiGroups": ["imagegate.io"], "resources": ["imagefacts"], "verbs": ["get", "list", "watch"]},
    ]
    subject = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": IMAGE_GATE_NAMESPACE}]
    return [
        *cluster_role_account(ACCOUNT, rules),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": ACCOUNT, "namespace": IMAGE_GATE_NAMESPACE},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": ACCOUNT, "namespace": IMAGE_GATE_NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": subject,
        },
    ]


@pytest.fixture(scope="module")
def read_only_gate(
    control_plane: ControlPlane,
    kube: Kube,
    fact_crd: None,
    cloudsim: CloudSim,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageGate]:
    without_leader(kube)
    rbac = rbac_without_fact_writes()
    kube.apply(rbac)
    gate = image_gate_as(ACCOUNT, tmp_path_factory.mktemp("read-only-facts"), control_plane, kube, cloudsim, catalogue)
    try:
        gate.start()
        yield gate
    finally:
        gate.stop()
        kube.kubectl("delete", "clusterrolebinding,clusterrole", ACCOUNT, "--ignore-not-found", check=False)


@pytest.fixture
def policy_namespace(kube: Kube, namespace: str) -> Iterator[str]:
    with deny_unresolved(kube, f"read-only-{namespace}", namespace, "swr.*.myhuaweicloud.com/**"):
        yield namespace


def degraded_total(gate: ImageGate) -> float:
    for line in gate.health("/metrics").text.splitlines():
        if line.startswith("image_gate_fact_store_degraded_total "):
            return float(line.split()[1])
    return 0.0


def test_admission_works_when_the_store_cannot_be_written(read_only_gate: ImageGate, policy_namespace: str) -> None:
    log = Path(read_only_gate.workdir) / "image-gate.log"
    answers = []
    for _ in range(20):  # the policy reaches the index within a moment; then the image is resolved in-process
        answers.append(review_new_pod(read_only_gate, policy_namespace, IMAGE))
        if answers[-1]["allowed"] and degraded_total(read_only_gate) >= 1:
            break
    assert answers[-1]["allowed"], answers[-1]
    assert degraded_total(read_only_gate) >= 1
    assert "fact store degraded" in log.read_text(), read_only_gate.describe_log()
