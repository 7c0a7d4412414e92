"""A namespace and a workload in it, applied together: the workload is judged by the namespace's labels.

The namespace reaches image-gate's index through kopf's watch; when the workload's review arrives
first, image-gate reads the namespace's labels from the API server (kube/namespaces.py). On this
loopback control plane the watch won every run seen (three, even with the two objects POSTed back to
back on one connection), so the first test holds the behaviour whichever path judged (it prints
which) and the second forces the API-server path. The GET path itself is pinned by
tests/unit/test_new_namespaces.py.
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
    admission_review,
    deployment_manifest,
)

pytestmark = pytest.mark.e2e


def no_centos_where(policies: PolicyFactory, gate_label: str, name: str) -> None:
    policies.apply(
        {
            "apiVersion": "imagegate.io/v1alpha1",
            "kind": "ImageGatePolicy",
            "metadata": {"name": name},
            "spec": {
                "match": {"namespaceSelector": {"matchLabels": {gate_label: "on"}}},
                "baseImage": {"deniedOS": [{"name": "CentOS"}]},
            },
        }
    )


def denial(namespace: str, policy: str) -> str:
    return (
        f"image-gate denied Deployment {namespace}/batch: 1 violation\n"
        f'- container "batch" (image {CENTOS_IMAGE}): policy "{policy}" rule baseImage.deniedOS: '
        "found CentOS Linux 7.9.2009, expected not CentOS"
    )


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
    no_centos_where(policies, gate_label, policy)
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": new_namespace, "labels": {E2E_LABEL: e2e_token, gate_label: "on"}},
    }
    applied = kube.apply([namespace, deployment_manifest("batch", new_namespace, CENTOS_IMAGE)], check=False)
    assert applied.returncode == 1, applied.stdout
    assert f"namespace/{new_namespace} created" in applied.stdout
    assert f'admission webhook "deployments.imagegate.io" denied the request: {denial(new_namespace, policy)}' in (
        applied.stderr
    ), applied.stderr
    assert kube.get_or_none("deployment", "batch", "--namespace", new_namespace) is None
    # Which path judged it (the race is the API server's): the GET, or the index when its watch won.
    read = f"namespace {new_namespace} is not in the index yet" in (image_gate.workdir / "image-gate.log").read_text()
    print(f"{new_namespace}: labels {'read from the API server' if read else 'from the index'}")


def test_a_namespace_the_api_server_does_not_know_is_refused_not_judged_without_labels(
    policies: PolicyFactory, image_gate: ImageGate, new_namespace: str
) -> None:
    """The GET path, for certain: on loopback the watch usually beats the workload to the index (the
    test above), so here the review names a namespace that exists nowhere. image-gate asks the real
    API server (404) and refuses, rather than judge as if the namespace had no labels."""
    gate_label = f"gate-{new_namespace}"
    no_centos_where(policies, gate_label, f"no-centos-{new_namespace}")
    response = image_gate.review(
        "deployments", admission_review(deployment_manifest("batch", new_namespace, CENTOS_IMAGE))
    )
    assert response["allowed"] is False
    assert response["status"]["code"] == 503
    assert response["status"]["message"] == (
        f"image-gate cannot tell which policies apply in namespace {new_namespace}: it is new to image-gate "
        "and its labels could not be read from the API server; retry in a few seconds"
    )
    log = (image_gate.workdir / "image-gate.log").read_text()
    assert f"could not read the labels of namespace {new_namespace}, which the index does not have yet: 404" in log
