"""The chart against a real kube-apiserver: every rendered object passes server-side validation,
and a real install/upgrade keeps the Helm-generated certificate.

``kubectl apply --dry-run=server --validate=strict`` runs each object through the API server's
OpenAPI schema, defaulting, strict field validation (unknown or duplicate fields fail) and the
built-in admission plugins, without persisting anything. Kinds whose CRDs this control plane
does not have (cert-manager's Certificate/Issuer, Prometheus Operator's ServiceMonitor) are left
out here and covered structurally by tests/unit/test_chart.py.

Nothing installed here may intercept other tests' requests: the real install uses
failurePolicy Ignore and an objectSelector that no object carries.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ControlPlane
from tests.chart.helm import CHART_DIR, MANIFEST, Doc, parse_docs
from tests.chart.scenarios import SCENARIOS

pytestmark = pytest.mark.e2e

NOT_SERVED_HERE = {"cert-manager.io/v1", "monitoring.coreos.com/v1"}


def run(
    env: dict[str, str], *argv: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def tool(env: dict[str, str], name: str) -> str:
    found = shutil.which(name, path=env["PATH"])
    assert found, f"{name} is not on the control plane's PATH"
    return found


@pytest.fixture
def namespace(kube_env: dict[str, str]) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    run(kube_env, tool(kube_env, "kubectl"), "create", "namespace", name)
    yield name
    run(kube_env, tool(kube_env, "kubectl"), "delete", "namespace", name, "--wait=false", check=False)


def helm_template(env: dict[str, str], release: str, namespace: str, values: dict[str, Any]) -> list[Doc]:
    with tempfile.TemporaryDirectory() as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        result = run(
            env,
            tool(env, "helm"),
            "template",
            release,
            str(CHART_DIR),
            "--namespace",
            namespace,
            "--include-crds",
            "--values",
            str(values_file),
        )
    return parse_docs(result.stdout)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rendered_objects_pass_server_side_validation(
    control_plane: ControlPlane, kube_env: dict[str, str], namespace: str, scenario: str
) -> None:
    release = f"dry-{uuid.uuid4().hex[:6]}"
    docs = helm_template(kube_env, release, namespace, SCENARIOS[scenario])
    checked = [d for d in docs if d["apiVersion"] not in NOT_SERVED_HERE]
    assert any(d["kind"] == "Deployment" for d in checked)
    assert any(d["kind"] == "ValidatingWebhookConfiguration" for d in checked)
    stream = yaml.safe_dump_all(checked)
    result = run(
        kube_env,
        tool(kube_env, "kubectl"),
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "--namespace",
        namespace,
        "-f",
        "-",
        stdin=stream,
        check=False,
    )
    assert result.returncode == 0, f"the API server rejected the {scenario} render:\n{result.stderr}"
    applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(checked), result.stdout


def test_plain_manifests_pass_server_side_validation(
    control_plane: ControlPlane, kube_env: dict[str, str], namespace: str
) -> None:
    """manifests/image-gate.yaml, moved into a fresh namespace (dry runs cannot create one)."""
    docs = parse_docs(MANIFEST.read_text())
    checked: list[Doc] = []
    for doc in docs:
        if doc["apiVersion"] in NOT_SERVED_HERE or doc["kind"] == "Namespace":
            continue
        if "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = namespace
        checked.append(doc)
    stream = yaml.safe_dump_all(checked)
    result = run(
        kube_env,
        tool(kube_env, "kubectl"),
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=stream,
        check=False,
    )
    assert result.returncode == 0, f"the API server rejected manifests/image-gate.yaml:\n{result.stderr}"


def test_helm_install_then_upgrade_keeps_the_certificate(
    control_plane: ControlPlane, kube_env: dict[str, str], namespace: str
) -> None:
    helm, kubectl = tool(kube_env, "helm"), tool(kube_env, "kubectl")
    release = f"ig-{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-image-gate"
    values = {
        # Inert in this shared cluster: nothing carries this label, and failures are ignored.
        "webhook": {"failurePolicy": "Ignore", "objectSelector": {"matchLabels": {"imagegate.io/e2e-never": release}}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        common = [release, str(CHART_DIR), "--namespace", namespace, "--values", str(values_file), "--skip-crds"]
        try:
            installed = run(kube_env, helm, "install", *common)
            assert f"rollout status deployment/{fullname}" in installed.stdout, "NOTES tell how to check it"

            def tls_state() -> tuple[dict[str, str], set[str]]:
                secret = json.loads(
                    run(kube_env, kubectl, "-n", namespace, "get", "secret", f"{fullname}-tls", "-o", "json").stdout
                )
                vwc = json.loads(
                    run(kube_env, kubectl, "get", "validatingwebhookconfiguration", fullname, "-o", "json").stdout
                )
                bundles = {w["clientConfig"]["caBundle"] for w in vwc["webhooks"]}
                return secret["data"], bundles

            # The generated key is memoised in .Values while rendering; it must not leak into the
            # values Helm stores with the release.
            stored = run(kube_env, helm, "get", "values", release, "--namespace", namespace, "--all", "-o", "json")
            assert "PRIVATE KEY" not in stored.stdout
            assert "__imageGateTls" not in stored.stdout

            before, bundles = tls_state()
            assert bundles == {before["ca.crt"]}
            assert base64.b64decode(before["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")

            run(kube_env, helm, "upgrade", *common, "--set", "config.logLevel=debug")
            after, bundles = tls_state()
            assert after == before, "helm upgrade must reuse the existing certificate (lookup)"
            assert bundles == {after["ca.crt"]}
            deployment = json.loads(
                run(kube_env, kubectl, "-n", namespace, "get", "deployment", fullname, "-o", "json").stdout
            )
            env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["IMAGE_GATE_LOG_LEVEL"] == "debug"
        finally:
            run(kube_env, helm, "uninstall", release, "--namespace", namespace, check=False)
    left = run(kube_env, kubectl, "get", "validatingwebhookconfiguration", fullname, check=False)
    assert left.returncode != 0, "helm uninstall must remove the webhook configuration"
