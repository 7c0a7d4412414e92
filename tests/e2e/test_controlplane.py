"""Prove the e2e harness itself: a real apiserver, working controllers, helm, and a clean shutdown."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import Binaries, ControlPlane

pytestmark = pytest.mark.e2e

# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
SEMVER = re.compile(
    r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def run(env: dict[str, str], *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a CLI (kubectl, helm) against the test cluster, showing its stderr on failure."""
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
    return result


def kubectl_json(env: dict[str, str], *argv: str) -> Any:
    return json.loads(run(env, "kubectl", *argv, "-o", "json").stdout)


def fresh_namespace(env: dict[str, str]) -> str:
    name = f"cp-{uuid.uuid4().hex[:8]}"
    run(env, "kubectl", "create", "namespace", name)
    return name


def test_version_is_stamped_semver(control_plane: ControlPlane, kube_env: dict[str, str]) -> None:
    expected = f"v{control_plane.binaries.version}"
    assert control_plane.version == expected
    assert SEMVER.match(control_plane.version), control_plane.version
    info = control_plane.get_json("/version")
    major, minor, _ = expected.removeprefix("v").split(".")
    assert (info["major"], info["minor"], info["gitTreeState"]) == (major, minor, "clean")
    # kubectl sees the same version (and would warn about skew, not fail).
    assert kubectl_json(kube_env, "version")["serverVersion"]["gitVersion"] == expected


def test_kubectl_lists_builtin_namespaces(kube_env: dict[str, str]) -> None:
    names = run(kube_env, "kubectl", "get", "namespaces", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(names)


def test_deployment_creates_replicaset_and_pending_pod(control_plane: ControlPlane, kube_env: dict[str, str]) -> None:
    """Only kube-controller-manager turns a Deployment into a ReplicaSet and Pods."""
    namespace = fresh_namespace(kube_env)
    control_plane.wait_for_service_account(namespace)
    run(kube_env, "kubectl", "-n", namespace, "create", "deployment", "web", "--image=nginx:1.27")

    deadline = time.monotonic() + 30
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        replicasets = kubectl_json(kube_env, "-n", namespace, "get", "replicasets")["items"]
        pods = kubectl_json(kube_env, "-n", namespace, "get", "pods")["items"]
        if replicasets and pods:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no ReplicaSet/Pod for deployment web in {namespace} after 30s")

    pod = pods[0]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert pod["spec"]["containers"][0]["image"] == "nginx:1.27"
    # No scheduler, no nodes: the Pod is stored but never placed.
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    # The ServiceAccount admission plugin is enabled and ran.
    assert pod["spec"]["serviceAccountName"] == "default"


def test_namespace_deletion_completes(kube_env: dict[str, str]) -> None:
    """Without the namespace controller a deleted namespace would stay Terminating forever."""
    namespace = fresh_namespace(kube_env)
    run(kube_env, "kubectl", "-n", namespace, "create", "configmap", "leftover", "--from-literal=a=b")
    run(kube_env, "kubectl", "delete", "namespace", namespace, "--wait=true", "--timeout=60s")
    gone = run(kube_env, "kubectl", "get", "namespace", namespace, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


def _write_chart(root: Path) -> Path:
    chart = root / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-demo\n"
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
        "  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    return chart


def test_helm_version_template_and_install(
    control_plane: ControlPlane, kube_env: dict[str, str], tmp_path: Path
) -> None:
    assert run(kube_env, "helm", "version", "--short").stdout.startswith("v")
    chart = _write_chart(tmp_path)

    rendered = run(kube_env, "helm", "template", "rel", str(chart), "--set", "greeting=hi").stdout
    assert "name: rel-demo" in rendered
    assert 'greeting: "hi"' in rendered

    # helm install reads .Capabilities from the live /version: the ldflags stamping matters here.
    namespace = fresh_namespace(kube_env)
    run(kube_env, "helm", "install", "rel", str(chart), "--namespace", namespace)
    data = kubectl_json(kube_env, "-n", namespace, "get", "configmap", "rel-demo")["data"]
    assert data == {"greeting": "hello", "kubeVersion": control_plane.version}


def _listening_ports() -> set[int]:
    """Local ports in LISTEN state (IPv4 and IPv6), read from /proc like ss does."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_stop_leaves_no_process_port_or_files(k8s_binaries: Binaries) -> None:
    """A second, private control plane: stopping the session one would break the other tests."""
    cp = ControlPlane(k8s_binaries).start()
    workdir, pids, ports = cp.workdir, dict(cp.pids), dict(cp.ports)
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert set(ports.values()) <= _listening_ports()

    cp.stop()

    assert not workdir.exists()
    assert _processes_mentioning(str(workdir)) == []
    for name, pid in pids.items():
        assert not os.path.exists(f"/proc/{pid}"), f"{name} (pid {pid}) still exists"
    assert not set(ports.values()) & _listening_ports()
    for port in ports.values():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    cp.stop()  # idempotent
