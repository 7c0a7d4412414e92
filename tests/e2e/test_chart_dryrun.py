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
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ControlPlane
from harness.process import free_ports

from tests.chart.helm import CHART_DIR, MANIFEST, Doc, parse_docs
from tests.chart.scenarios import SCENARIOS
from tests.e2e.imagegate import EnvProcess, Kube, service_account_kubeconfig, wait_for

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
    assert_server_accepts(kube_env, checked, f"the {scenario} render", namespace=namespace)


def assert_server_accepts(
    kube_env: dict[str, str], docs: list[Doc], what: str, *, namespace: str | None = None
) -> None:
    """``kubectl apply --dry-run=server --validate=strict``: every object valid, unknown fields refused."""
    where = ["--namespace", namespace] if namespace else []
    result = run(
        kube_env,
        tool(kube_env, "kubectl"),
        "apply",
        "--dry-run=server",
        "--validate=strict",
        *where,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
        check=False,
    )
    assert result.returncode == 0, f"the API server rejected {what}:\n{result.stderr}"
    applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(docs), result.stdout


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
    assert_server_accepts(kube_env, checked, "manifests/image-gate.yaml")


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


# What the chart's ClusterRole must allow, and a sample of what it must not.
ALLOWED = [
    ("list", "imagegatepolicies.imagegate.io"),
    ("watch", "imagegatepolicies.imagegate.io"),
    ("patch", "imagegatepolicies.imagegate.io", "--subresource=status"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "events", "--all-namespaces"),
    ("watch", "imagefacts.imagegate.io"),
    ("create", "imagefacts.imagegate.io"),
    ("delete", "imagefacts.imagegate.io"),
    ("patch", "imagefacts.imagegate.io", "--subresource=status"),
    # The background audit reads what runs (its reports' CRDs are not installed here: can-i would say no).
    ("list", "pods", "--all-namespaces"),
    ("watch", "deployments.apps", "--all-namespaces"),
    ("list", "cronjobs.batch", "--all-namespaces"),
]
DENIED = [
    ("update", "leases.coordination.k8s.io", "--all-namespaces"),
    ("get", "secrets", "--all-namespaces"),
    ("create", "pods", "--all-namespaces"),
    ("delete", "deployments.apps", "--all-namespaces"),
    ("update", "jobs.batch", "--all-namespaces"),
    ("patch", "imagegatepolicies.imagegate.io"),
    ("update", "imagegatepolicies.imagegate.io", "--subresource=status"),
    ("delete", "imagegatepolicies.imagegate.io"),
    ("patch", "namespaces"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
]


def https_status(port: int, path: str, ca_pem: str, server_name: str) -> int | None:
    """GET ``path`` from 127.0.0.1:port, verifying the certificate for ``server_name``; None if down."""
    context = ssl.create_default_context(cadata=ca_pem)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            head = tls.recv(64).decode("latin-1")
    except ConnectionRefusedError:
        return None
    return int(head.split()[1])


@pytest.mark.usefixtures("fact_crd")
def test_app_runs_with_the_charts_rbac_env_and_certificate(
    control_plane: ControlPlane, kube: Kube, crd: dict[str, Any], namespace: str, tmp_path: Path
) -> None:
    """The Deployment's contract, minus the kubelet: image-gate started with the rendered env,
    ConfigMap and Helm-generated certificate, logged in as the chart's ServiceAccount (so with
    exactly the ClusterRole's permissions), gets ready and serves TLS for the Service name.

    With the ImageFact CRD installed, as the chart installs it: `kubectl auth can-i` resolves
    ``imagefacts.imagegate.io`` through discovery and answers "no" for a resource it cannot find."""
    release = f"rb-{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-image-gate"
    docs = helm_template(dict(kube.env), release, namespace, {})
    rbac = [
        d for d in docs if d["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    ]
    kube.apply(rbac)
    process: EnvProcess | None = None
    try:
        subject = f"system:serviceaccount:{namespace}:{fullname}"
        for verb, resource, *extra in ALLOWED:
            answer = kube.kubectl("auth", "can-i", verb, resource, f"--as={subject}", *extra, check=False)
            assert answer.stdout.strip() == "yes", f"the chart's role cannot {verb} {resource} {extra}"
        for verb, resource, *extra in DENIED:
            answer = kube.kubectl("auth", "can-i", verb, resource, f"--as={subject}", *extra, check=False)
            assert answer.stdout.strip() == "no", f"the chart's role can {verb} {resource} {extra}"
        for verb in ("get", "create", "update"):
            answer = kube.kubectl(
                "auth", "can-i", verb, "leases.coordination.k8s.io", f"--as={subject}", "-n", namespace, check=False
            )
            assert answer.stdout.strip() == "yes", f"the chart's Role cannot {verb} the Lease in {namespace}"

        token = kube.kubectl("create", "token", fullname, "--namespace", namespace, "--duration=1h").stdout.strip()
        kubeconfig = service_account_kubeconfig(control_plane, token, tmp_path / "sa.kubeconfig")

        # The mounted volumes, as files.
        (tmp_path / "tls").mkdir()
        (tmp_path / "config").mkdir()
        secret = next(d for d in docs if d["kind"] == "Secret")
        for key, value in secret["data"].items():
            (tmp_path / "tls" / key).write_bytes(base64.b64decode(value))
        configmap = next(d for d in docs if d["kind"] == "ConfigMap")
        (tmp_path / "config" / "registries.yaml").write_text(configmap["data"]["registries.yaml"])

        deployment = next(d for d in docs if d["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        port, health_port = free_ports(2)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_GATE_", "HUAWEICLOUD_", "ALIBABA_"))}
        env |= {"KUBECONFIG": str(kubeconfig), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        for item in container["env"]:
            value = item.get("value", "")
            value = value.replace("/etc/image-gate/tls", str(tmp_path / "tls"))
            env[item["name"]] = value.replace("/etc/image-gate/config", str(tmp_path / "config"))
        env |= {
            "IMAGE_GATE_NAMESPACE": namespace,  # the downward API
            "IMAGE_GATE_LISTEN_ADDRESS": "127.0.0.1",  # loopback only in tests
            "IMAGE_GATE_PORT": str(port),
            "IMAGE_GATE_HEALTH_PORT": str(health_port),
        }
        argv = [str(Path(sys.executable).with_name("image-gate")), *container["args"]]
        process = EnvProcess("image-gate (chart contract)", argv, tmp_path / "image-gate.log", env=env)
        process.start()

        ca_pem = (tmp_path / "tls" / "ca.crt").read_text()
        service_name = f"{fullname}.{namespace}.svc"

        def ready() -> bool:
            process.check_running()
            return https_status(health_port, "/readyz", ca_pem, service_name) == 200

        wait_for(ready, what=f"/readyz of image-gate running as {subject}", timeout=60)
        assert https_status(health_port, "/healthz", ca_pem, service_name) == 200
        assert https_status(health_port, "/metrics", ca_pem, service_name) == 200
        # The webhook port serves the same certificate; a GET is not an AdmissionReview.
        assert https_status(port, "/pods", ca_pem, service_name) is not None

        log = (tmp_path / "image-gate.log").read_text()
        for sign in ("Forbidden", "forbidden", "Not enough permissions", " 403"):
            assert sign not in log, f"permission problem in the log:\n{process.describe_log()}"
    finally:
        if process is not None:
            process.terminate()
        kube.kubectl("delete", "clusterrolebinding,clusterrole", fullname, "--ignore-not-found", check=False)
