"""A namespace and a workload in it, applied together: the workload is judged by the namespace's labels.

The namespace reaches image-gate's index through kopf's watch, usually after the workload's review
has arrived; image-gate then reads the namespace's labels from the API server (kube/namespaces.py).
A Deployment rather than a Pod: a Pod in a namespace seconds old is refused by the ServiceAccount
admission plugin (no ``default`` ServiceAccount yet) before any webhook sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.imagegate import (
    CENTOS_IMAGE,
    E2E_LABEL,
    ImageGate,
    Kube,
    PolicyFactory,
    deployment_manifest,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(name="new_namespace")
def new_namespace_fixture(kube: Kube) -> Iterator[str]:
    name = f"new-{uuid.uuid4().hex[:8]}"
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.mark.usefixtures("webhook_configuration")
def test_a_workload_applied_with_its_namespace_is_judged_by_the_label_selected_policy(
    kube: Kube, policies: PolicyFactory, image_gate: ImageGate, e2e_token: str, new_namespace: str
) -> None:
    gate_label = f"gate-{new_namespace}"
    policy = f"no-centos-{new_namespace}"
    policies.apply(
        {
            "apiVersion": "imagegate.io/v1alpha1",
            "kind": "ImageGatePolicy",
            "metadata": {"name": policy},
            "spec": {
                "match": {"namespaceSelector": {"matchLabels": {gate_label: "on"}}},
                "baseImage": {"deniedOS": [{"name": "CentOS"}]},
            },
        }
    )
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": new_namespace, "labels": {E2E_LABEL: e2e_token, gate_label: "on"}},
    }
    applied = kube.apply([namespace, deployment_manifest("batch", new_namespace, CENTOS_IMAGE)], check=False)
    assert applied.returncode == 1, applied.stdout
    assert f"namespace/{new_namespace} created" in applied.stdout
    assert (
        'admission webhook "deployments.imagegate.io" denied the request: '
        f"image-gate denied Deployment {new_namespace}/batch: 1 violation\n"
        f'- container "batch" (image {CENTOS_IMAGE}): policy "{policy}" rule baseImage.deniedOS: '
        "found CentOS Linux 7.9.2009, expected not CentOS"
    ) in applied.stderr, applied.stderr
    assert kube.get_or_none("deployment", "batch", "--namespace", new_namespace) is None
