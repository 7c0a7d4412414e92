"""A real, throwaway Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

No Docker, no nodes, no scheduler: Pods are admitted (through real admission
webhooks) and stay Pending. kube-controller-manager is included so the cluster
behaves like a real one for everything above the node level: Deployments create
ReplicaSets and Pods, namespaces finish deleting, garbage collection runs, and
every namespace gets its ``default`` ServiceAccount and ``kube-root-ca.crt``.

Because the ServiceAccount controller runs, the ``ServiceAccount`` admission
plugin stays **enabled** (envtest disables it only because it has no
controller-manager). Pods therefore reach webhooks exactly as in production,
with ``serviceAccountName`` and the projected token volume filled in. The one
consequence for tests: in a brand-new namespace the ``default`` ServiceAccount
appears a moment after the namespace; a bare Pod created before that is
rejected, so call :meth:`ControlPlane.wait_for_service_account` first.
(Deployments do not care: the ReplicaSet controller retries.)

Usage::

    with ControlPlane() as cp:
        subprocess.run(["kubectl", "get", "ns"], env={**os.environ, **cp.env()}, check=True)
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import shutil
import ssl
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from harness.binaries import Binaries, locate
from harness.pki import CertFiles, ClusterPki, create_cluster_pki
from harness.process import ManagedProcess, ProcessExitedError, free_ports, wait_until

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message carries the components' log tails."""


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in a private temp dir on free loopback ports.

    ``start()`` returns only once the apiserver is ready and the controller
    manager has created the ``default`` ServiceAccount. ``stop()`` (also run
    at exit and on a failed start) kills every process and deletes the temp
    dir, so nothing outlives the test session.
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        start_timeout: float = 90.0,
        admission_control_config: Path | None = None,
    ) -> None:
        self.binaries = binaries or locate()
        self.start_timeout = start_timeout
        self.admission_control_config = admission_control_config
        """kube-apiserver's ``--admission-control-config-file`` (see `write_webhook_client_config`)."""
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.startup_seconds: float | None = None
        self._workdir: Path | None = None
        self._pki: ClusterPki | None = None
        self._processes: list[ManagedProcess] = []
        self._tls: ssl.SSLContext | None = None
        self._version: str | None = None

    # ----------------------------------------------------------------- public API

    @property
    def workdir(self) -> Path:
        """The private temp dir holding PKI, kubeconfigs, etcd data and logs."""
        if self._workdir is None:
            raise RuntimeError("control plane is not started")
        return self._workdir

    @property
    def kubeconfig_path(self) -> Path:
        """Admin (system:masters) kubeconfig for kubectl, helm, kopf and the Python client."""
        return self.workdir / "admin.kubeconfig"

    @property
    def server_url(self) -> str:
        """``https://127.0.0.1:<port>`` of kube-apiserver."""
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def ca_path(self) -> Path:
        """The cluster CA certificate (verifies the apiserver; signs client certs)."""
        return self._require_pki().ca.cert

    @property
    def ca_pem(self) -> bytes:
        """The cluster CA certificate in PEM form."""
        return self._require_pki().ca_pem

    @property
    def version(self) -> str:
        """``gitVersion`` from the apiserver's ``/version``, e.g. ``v1.37.2``."""
        if self._version is None:
            raise RuntimeError("control plane is not started")
        return self._version

    def env(self) -> dict[str, str]:
        """Environment overrides for child processes: KUBECONFIG, PATH (helm, kubectl), NO_PROXY."""
        no_proxy = ",".join(filter(None, ["127.0.0.1", "localhost", os.environ.get("NO_PROXY", "")]))
        return {
            "KUBECONFIG": str(self.kubeconfig_path),
            "PATH": os.pathsep.join([str(self.binaries.directory), os.environ.get("PATH", "")]),
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def start(self) -> ControlPlane:
        """Start all components and wait until the cluster is usable; clean up on any failure."""
        if self._workdir is not None:
            raise RuntimeError("control plane is already started")
        began = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="image-gate-cp-"))
        atexit.register(self.stop)
        try:
            self._boot()
        except (ProcessExitedError, TimeoutError, OSError) as exc:
            # The dead component's log tail is already in its error; add the others' for context.
            dead = exc.process if isinstance(exc, ProcessExitedError) else None
            logs = "\n".join(p.describe_log() for p in self._processes if p is not dead)
            self.stop()
            raise ControlPlaneError(f"control plane failed to start: {exc}\n{logs}") from exc
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Terminate components newest-first (SIGTERM, then SIGKILL) and delete the temp dir. Idempotent."""
        atexit.unregister(self.stop)
        for process in reversed(self._processes):
            process.terminate()
        self._processes.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._pki = None
        self._tls = None
        self._version = None

    def check_running(self) -> None:
        """Raise if any component has died (used by the ``up`` CLI while it idles)."""
        for process in self._processes:
            process.check_running()

    def get_json(self, path: str) -> Any:
        """GET ``path`` from the apiserver as admin and decode the JSON body; raise on non-2xx."""
        status, body = self._get(path)
        if not 200 <= status < 300:
            raise RuntimeError(f"GET {path} -> HTTP {status}: {body[:500]!r}")
        return json.loads(body)

    def wait_for_service_account(self, namespace: str, name: str = "default", timeout: float = 30.0) -> None:
        """Block until kube-controller-manager has created ``namespace/name``.

        Needed before creating bare Pods in a fresh namespace: the enabled
        ServiceAccount admission plugin rejects Pods whose SA does not exist yet.
        """
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
        wait_until(
            lambda: self._get(path)[0] == 200,
            what=f"serviceaccount {namespace}/{name}",
            timeout=timeout,
            watched=self._processes,
        )

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------- start-up

    def _boot(self) -> None:
        workdir = self.workdir
        (workdir / "logs").mkdir()
        self._pki = create_cluster_pki(workdir / "pki")
        self.ports = dict(zip(["etcd", "etcd_peer", "apiserver", "controller_manager"], free_ports(4), strict=True))
        self._tls = self._admin_tls_context()

        self._spawn("etcd", self._etcd_argv())
        wait_until(self._etcd_healthy, what="etcd /health", timeout=30, watched=self._processes)

        self._spawn("kube-apiserver", self._apiserver_argv())
        wait_until(
            lambda: self._get("/readyz")[0] == 200,
            what="kube-apiserver /readyz",
            timeout=self.start_timeout,
            watched=self._processes,
        )
        self._version = str(self.get_json("/version")["gitVersion"])

        self._write_kubeconfig(self.kubeconfig_path, "image-gate-admin", self._pki.admin.cert, self._pki.admin.key)
        kcm_kubeconfig = workdir / "controller-manager.kubeconfig"
        kcm = self._pki.controller_manager
        self._write_kubeconfig(kcm_kubeconfig, "system:kube-controller-manager", kcm.cert, kcm.key)
        self._spawn("kube-controller-manager", self._controller_manager_argv(kcm_kubeconfig))
        # The default SA in "default" is the first sign that the controllers actually run.
        self.wait_for_service_account("default", timeout=self.start_timeout)

    def _spawn(self, name: str, argv: list[str]) -> None:
        process = ManagedProcess(name, argv, self.workdir / "logs" / f"{name}.log")
        self._processes.append(process)
        process.start()
        assert process.pid is not None
        self.pids[name] = process.pid

    def _etcd_argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        return [
            str(self.binaries.etcd),
            "--name=image-gate",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=image-gate={peer}",
            # Throwaway data: skipping fsync makes every write (and the whole test suite) much faster.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self._require_pki()
        port = self.ports["apiserver"]
        argv = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            # Some authorizer is required for the secure port; Node is useless without kubelets.
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://127.0.0.1:{port}",
            f"--service-account-key-file={pki.service_account.cert}",
            f"--service-account-signing-key-file={pki.service_account.key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            # Since 1.37 a loopback advertise address is rejected by the lease/master-count
            # endpoint reconcilers; with "none" nothing publishes the kubernetes Endpoints,
            # which nothing here needs. Loopback is required: the machine may have no default route.
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
        ]
        if self.admission_control_config is not None:
            argv.append(f"--admission-control-config-file={self.admission_control_config}")
        return argv

    def _controller_manager_argv(self, kubeconfig: Path) -> list[str]:
        pki = self._require_pki()
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            # Its own HTTPS endpoint delegates authn/authz to the apiserver, as with kubeadm.
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # Do not read the front-proxy (requestheader) CA from the cluster: the apiserver has no
            # aggregation layer configured, and the lookup would log an error every few seconds.
            "--authentication-skip-lookup=true",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['controller_manager']}",
            f"--cert-dir={self.workdir / 'controller-manager-certs'}",
            "--leader-elect=false",
            # Each controller acts as its own ServiceAccount (bootstrap RBAC), like kubeadm; this also
            # exercises the TokenRequest path end to end.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account.key}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--controllers=*",
        ]

    # ------------------------------------------------------------------ internals

    def _require_pki(self) -> ClusterPki:
        if self._pki is None:
            raise RuntimeError("control plane is not started")
        return self._pki

    def _admin_tls_context(self) -> ssl.SSLContext:
        """TLS for our own probes: verify the apiserver with our CA, authenticate as admin."""
        pki = self._require_pki()
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        return context

    def _get(self, path: str) -> tuple[int, bytes]:
        """One admin GET to the apiserver.

        http.client rather than urllib: it never consults HTTP(S)_PROXY, so
        traffic stays on loopback whatever the environment says.
        """
        connection = http.client.HTTPSConnection("127.0.0.1", self.ports["apiserver"], context=self._tls, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def _etcd_healthy(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.ports["etcd"], timeout=5)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            return response.status == 200 and json.loads(response.read()).get("health") == "true"
        finally:
            connection.close()

    def _write_kubeconfig(self, path: Path, user: str, cert: Path, key: Path) -> None:
        """Write a kubeconfig that references the PEM files (so it holds no key material itself)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "image-gate",
                    "cluster": {"server": self.server_url, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "image-gate", "context": {"cluster": "image-gate", "user": user}}],
            "current-context": "image-gate",
        }
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))


def write_webhook_client_config(directory: Path, client: CertFiles, *, webhook_host: str = "*") -> Path:
    """Write an AdmissionConfiguration by which kube-apiserver presents ``client`` to validating webhooks.

    ``webhook_host`` is the webhook's host as the API server calls it (``host:port`` of a URL, or
    ``<service>.<namespace>.svc``); ``*`` means every webhook. Returns the file for
    ``ControlPlane(admission_control_config=...)``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "webhook-clients.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "users": [
                    {
                        "name": webhook_host,
                        "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
                    }
                ],
            }
        )
    )
    config = directory / "admission.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {
                        "name": "ValidatingAdmissionWebhook",
                        "configuration": {
                            "apiVersion": "apiserver.config.k8s.io/v1",
                            "kind": "WebhookAdmissionConfiguration",
                            "kubeConfigFile": str(kubeconfig),
                        },
                    }
                ],
            }
        )
    )
    return config
