"""A Helm release of the chart gates pods end to end.

``tests/e2e/test_chart_dryrun.py`` already covers the install mechanics (server-side validation of
every render, ``helm install`` + ``upgrade`` + ``uninstall`` with an inert webhook, the generated
certificate kept across upgrades). What it cannot show is that the release's own
ValidatingWebhookConfiguration actually sends reviews to image-gate and that its verdicts reach
kubectl. This module installs the chart with ``webhook.url``/``webhook.caBundle`` aimed at the
session's image-gate (the webhook Deployment itself cannot run here: there are no nodes), checks
a pod is refused and another admitted through the release, and that ``helm uninstall`` removes
the gate.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.imagegate import (
    CENTOS_IMAGE,
    CHART_DIR,
    CRD_NAME,
    UBUNTU_IMAGE,
    ImageGate,
    Kube,
    PolicyFactory,
    helm_release,
    make_namespace,
    scoped_policy,
)

pytestmark = pytest.mark.e2e

HELM_LABEL = "imagegate.io/e2e-helm"
HANDLERS = ["cronjobs", "daemonsets", "deployments", "jobs", "pods", "replicasets", "statefulsets"]


@pytest.fixture
def release(kube: Kube) -> Iterator[tuple[str, str]]:
    """A release name and its (not yet created) namespace; uninstalled and deleted afterwards."""
    with helm_release(kube, "ig", "helm") as names:
        yield names


@pytest.fixture
def app_namespace(kube: Kube, release: tuple[str, str]) -> Iterator[str]:
    """A namespace the release's webhook configuration selects (and no other)."""
    name = make_namespace(kube, "helm-app", {HELM_LABEL: release[0]})
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def test_helm_release_gates_pods_until_uninstalled(
    kube: Kube,
    image_gate: ImageGate,
    crd: dict[str, Any],
    policies: PolicyFactory,
    release: tuple[str, str],
    app_namespace: str,
) -> None:
    name, namespace = release
    fullname = f"{name}-image-gate"
    values = {
        "webhook": {
            "url": image_gate.url,
            "caBundle": image_gate.ca_bundle,
            "namespaceSelector": {"matchLabels": {HELM_LABEL: name}},
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        installed = kube.helm(
            *("install", name, str(CHART_DIR), "--namespace", namespace, "--create-namespace"),
            *("--values", str(values_file)),
        )
    assert "STATUS: deployed" in installed.stdout, installed.stdout
    assert kube.get("crd", CRD_NAME)["metadata"]["name"] == CRD_NAME

    configuration = kube.get("validatingwebhookconfiguration", fullname)
    assert [w["name"] for w in configuration["webhooks"]] == [f"{h}.imagegate.io" for h in HANDLERS]
    for webhook in configuration["webhooks"]:
        handler = webhook["name"].removesuffix(".imagegate.io")
        assert webhook["clientConfig"] == {"url": f"{image_gate.url}/{handler}", "caBundle": image_gate.ca_bundle}
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["timeoutSeconds"] == 5
    assert kube.get("deployment", fullname, "--namespace", namespace)["spec"]["replicas"] == 2

    policy = f"deny-centos-{app_namespace}"
    policies.apply(scoped_policy(policy, app_namespace, {"baseImage": {"deniedOS": [{"name": "CentOS"}]}}))
    refused = kube.kubectl("run", "legacy", f"--image={CENTOS_IMAGE}", "--namespace", app_namespace, check=False)
    assert refused.returncode == 1
    assert 'admission webhook "pods.imagegate.io" denied the request' in refused.stderr
    admitted = kube.kubectl("run", "api", f"--image={UBUNTU_IMAGE}", "--namespace", app_namespace)
    assert admitted.stdout == "pod/api created\n"

    uninstalled = kube.helm("uninstall", name, "--namespace", namespace)
    assert f'release "{name}" uninstalled' in uninstalled.stdout
    assert kube.get_or_none("validatingwebhookconfiguration", fullname) is None
    unguarded = kube.kubectl("run", "legacy", f"--image={CENTOS_IMAGE}", "--namespace", app_namespace)
    assert unguarded.stdout == "pod/legacy created\n", "without the release nothing sends the pod to image-gate"
    assert kube.get("crd", CRD_NAME), "helm uninstall leaves CRDs (and so every policy) in place"
