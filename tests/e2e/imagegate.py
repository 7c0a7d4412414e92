"""Fixtures and helpers for end-to-end tests of image-gate against the real control plane.

What runs, once per test session (see ``tests/e2e/conftest.py`` for the control plane):

* **cloudsim** (``python -m cloudsim``) serving the HSS and SAS simulators over HTTPS, with a
  throwaway CA, the demo catalogue, and HSS's server-side quota switched off;
* the **ImageGatePolicy CRD**, applied from ``charts/image-gate/crds/``;
* **image-gate** as a local process (``image-gate run``) with a serving certificate from another
  throwaway CA, logged in with the control plane's admin kubeconfig;
* a **ValidatingWebhookConfiguration** rendered by ``helm template`` from the chart's own template
  with ``webhook.url`` and ``webhook.caBundle``, so the API server calls the local process. It only
  selects namespaces labelled ``imagegate.io/e2e=<session token>``: other e2e modules sharing the
  control plane are never sent to it.

Tests make their own namespaces (`namespace` fixture) and scope their policies to them with
`scoped_policy`, so nothing leaks from one test into the next. The fixtures (``*_fixture``) reach
the tests through ``tests/e2e/conftest.py``; test modules import from here only the helpers and
types they use::

    from tests.e2e.imagegate import UBUNTU_IMAGE, ImageGate, PolicyFactory, pod_manifest

Everything started here is stopped, and everything applied is deleted, even when a test fails.
The processes' logs stay in pytest's temporary directory (``image-gate0/image-gate.log``,
``cloudsim0/cloudsim.log`` under ``/tmp/pytest-of-$USER/pytest-N/``) for a post-mortem.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from harness import ControlPlane
from harness.process import ManagedProcess, _die_with_parent, free_ports

from cloudsim.catalogue import Catalogue
from tests.tlsutil import TestPki, make_pki

__all__ = [
    "ACR_DIGEST",
    "ACR_IMAGE",
    "ACR_OTHER_DIGEST",
    "CATALOGUE_PATH",
    "CENTOS_IMAGE",
    "CHART_DIR",
    "CORE_RULES",
    "CRD_NAME",
    "E2E_LABEL",
    "IMAGE_GATE_NAMESPACE",
    "UBUNTU_IMAGE",
    "CloudSim",
    "EnvProcess",
    "ImageGate",
    "Kube",
    "PolicyFactory",
    "admission_review",
    "applied",
    "catalogue_fixture",
    "cloudsim_fixture",
    "cluster_role_account",
    "crd_fixture",
    "cronjob_manifest",
    "deployment_manifest",
    "e2e_token_fixture",
    "established_crd",
    "image_gate_as",
    "image_gate_env",
    "image_gate_fixture",
    "kube_fixture",
    "make_namespace",
    "namespace_fixture",
    "new_image_gate",
    "pod_manifest",
    "policies_fixture",
    "ready_condition",
    "render_webhook_configuration",
    "scoped_policy",
    "service_account_kubeconfig",
    "start_cloudsim",
    "wait_for",
    "webhook_configuration_fixture",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "image-gate"
CRD_FILE = CHART_DIR / "crds" / "imagegate.io_imagegatepolicies.yaml"
CRD_NAME = "imagegatepolicies.imagegate.io"
CATALOGUE_PATH = REPO_ROOT / "operator" / "cloudsim" / "catalogue.yaml"
E2E_LABEL = "imagegate.io/e2e"
"""Namespaces carrying this label (value: the session token) are sent to the session's webhook."""
IMAGE_GATE_NAMESPACE = "image-gate"
"""image-gate's own namespace (IMAGE_GATE_NAMESPACE, and the chart's release namespace)."""
SESSION_RELEASE = "e2e"
"""Release name for ``helm template``: the webhook configuration is then ``e2e-image-gate``."""

T = TypeVar("T")


# ------------------------------------------------------------------------------------------ polling


def wait_for(probe: Callable[[], T | None], *, what: str, timeout: float = 30.0, interval: float = 0.2) -> T:
    """Call ``probe`` until it returns something other than None/False; return that, or fail.

    The failure message names ``what`` was awaited and the last value seen, so a
    timeout explains itself.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# -------------------------------------------------------------------------------------------- kubectl


@dataclass(frozen=True)
class Kube:
    """kubectl and helm against the control plane, with captured output (nothing is printed)."""

    control_plane: ControlPlane
    env: Mapping[str, str]

    @property
    def kubectl_path(self) -> str:
        return str(self.control_plane.binaries.kubectl)

    @property
    def helm_path(self) -> str:
        return str(self.control_plane.binaries.helm)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl ARGS``; with ``check`` a non-zero exit fails the test with both outputs."""
        return self._run([self.kubectl_path, *args], stdin=stdin, check=check, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``helm ARGS``; with ``check`` a non-zero exit fails the test with both outputs."""
        return self._run([self.helm_path, *args], stdin=None, check=check, timeout=timeout)

    def get(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, decoded."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def get_or_none(self, *args: str) -> Any | None:
        """Like `get`, but None when the object does not exist."""
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            pytest.fail(f"kubectl get {' '.join(args)} failed:\n{result.stderr}")
        return json.loads(result.stdout)

    def apply(
        self, manifests: Mapping[str, Any] | Sequence[Mapping[str, Any]], *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of one manifest or several."""
        documents = [manifests] if isinstance(manifests, Mapping) else list(manifests)
        stream = yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False)
        return self.kubectl("apply", *args, "-f", "-", stdin=stream, check=check)

    def events(self, namespace: str, *, reason: str | None = None) -> list[dict[str, Any]]:
        """The core/v1 Events of a namespace, optionally only those with ``reason``."""
        selector = ["--field-selector", f"reason={reason}"] if reason else []
        items: list[dict[str, Any]] = self.get("events", "--namespace", namespace, *selector)["items"]
        return items

    def _run(
        self, argv: list[str], *, stdin: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, env=dict(self.env), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"`{' '.join([Path(argv[0]).name, *argv[1:]])}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result


@pytest.fixture(scope="session", name="kube")
def kube_fixture(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Kube:
    """kubectl/helm bound to the session's control plane."""
    env = {**os.environ, **control_plane.env()}
    # Discovery caches and helm's config go to private dirs, not the user's ~/.kube and ~/.config.
    cache = tmp_path_factory.mktemp("kube-cache")
    env.update(
        {
            "KUBECACHEDIR": str(cache / "kube"),
            "HELM_CACHE_HOME": str(cache / "helm-cache"),
            "HELM_CONFIG_HOME": str(cache / "helm-config"),
            "HELM_DATA_HOME": str(cache / "helm-data"),
        }
    )
    return Kube(control_plane, env)


@pytest.fixture(scope="session", name="e2e_token")
def e2e_token_fixture() -> str:
    """A per-session value for the ``imagegate.io/e2e`` namespace label the webhook selects on."""
    return uuid.uuid4().hex[:10]


def make_namespace(kube: Kube, prefix: str, labels: Mapping[str, str]) -> str:
    """Create a namespace ``<prefix>-<random>`` with ``labels``; wait for its default ServiceAccount."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}})
    kube.control_plane.wait_for_service_account(name)
    return name


@contextlib.contextmanager
def helm_release(kube: Kube, name_prefix: str, namespace_prefix: str) -> Iterator[tuple[str, str]]:
    """A fresh release name and namespace (neither created here); uninstalled and deleted afterwards."""
    suffix = uuid.uuid4().hex[:6]
    name, namespace = f"{name_prefix}-{suffix}", f"{namespace_prefix}-{suffix}"
    try:
        yield name, namespace
    finally:
        kube.helm("uninstall", name, "--namespace", namespace, check=False)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(name="namespace")
def namespace_fixture(kube: Kube, e2e_token: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that the session webhook judges; deleted (without waiting) afterwards."""
    prefix = request.node.name.removeprefix("test_").replace("_", "-")[:30].strip("-").lower()
    name = make_namespace(kube, prefix or "e2e", {E2E_LABEL: e2e_token})
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


# ------------------------------------------------------------------------------------------- cloudsim


UBUNTU_IMAGE = "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
"""Compliant: an SWR image on Ubuntu 22.04."""
CENTOS_IMAGE = "swr.cn-north-4.myhuaweicloud.com/demo/legacy-batch:2.3.0"
"""Non-compliant: an SWR image on CentOS Linux 7.9.2009."""
ACR_IMAGE = "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0"
"""An ACR tag that Security Center knows (digest `ACR_DIGEST`)."""
ACR_DIGEST = "sha256:03392debbd9303b79655c064ece94522358e261caa1cb99c340978e1c38a1e08"
ACR_OTHER_DIGEST = "sha256:8819236b5d5363b7de82e88ee6ccddbb9efd840367af1f7ecb59307c0207a911"
"""The digest of another tag of the same repository (shop/web:2.1): a stale pin for tag 2.0."""

_EXPECTED_CATALOGUE = {
    UBUNTU_IMAGE: ("Ubuntu", "22.04"),
    CENTOS_IMAGE: ("CentOS Linux", "7.9.2009"),
}


@pytest.fixture(scope="session", name="catalogue")
def catalogue_fixture() -> Catalogue:
    """cloudsim's demo catalogue, checked to hold the images (and facts) the tests' messages quote."""
    loaded = Catalogue.load(CATALOGUE_PATH)
    by_reference = {str(image.reference): image for image in loaded.images}
    for reference, (os_name, os_version) in _EXPECTED_CATALOGUE.items():
        image = by_reference.get(reference)
        base = image.huawei.base_image if image is not None and image.huawei is not None else None
        if base is None or (base.os_name, base.os_version) != (os_name, os_version):
            pytest.fail(f"{CATALOGUE_PATH}: the e2e tests expect {reference} on {os_name} {os_version}")
    acr = by_reference.get(ACR_IMAGE)
    if acr is None or acr.aliyun is None or acr.digest != ACR_DIGEST:
        pytest.fail(f"{CATALOGUE_PATH}: the e2e tests expect {ACR_IMAGE} in ACR with digest {ACR_DIGEST}")
    return loaded


@dataclass
class CloudSim:
    """The running ``python -m cloudsim`` process (HTTPS, the catalogue's images and credentials)."""

    process: ManagedProcess
    hss_url: str
    sas_url: str
    pki: TestPki

    @property
    def ca_file(self) -> Path:
        """The CA that signed cloudsim's certificate (image-gate's IMAGE_GATE_CLOUD_CA_FILE)."""
        return self.pki.ca_file

    def calls(self) -> dict[str, Any]:
        """Calls per API so far, from the simulator's ``/_sim/calls``."""
        with httpx.Client(verify=_verify(self.ca_file), trust_env=False, timeout=10) as client:
            data: dict[str, Any] = client.get(f"{self.hss_url}/_sim/calls").raise_for_status().json()
        return data


def _verify(ca_file: Path) -> ssl.SSLContext:
    """A client TLS context trusting only ``ca_file``."""
    return ssl.create_default_context(cafile=str(ca_file))


def start_cloudsim(workdir: Path, *, hss_rate: str = "off") -> CloudSim:
    """Start cloudsim over HTTPS on free loopback ports; return once its ready file is written."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = make_pki(workdir / "tls")
    ready = workdir / "cloudsim.json"
    process = ManagedProcess(
        "cloudsim",
        [
            sys.executable,
            "-m",
            "cloudsim",
            "--catalogue",
            str(CATALOGUE_PATH),
            "--tls-cert",
            str(pki.cert_file),
            "--tls-key",
            str(pki.key_file),
            "--hss-rate",
            hss_rate,
            "--ready-file",
            str(ready),
        ],
        workdir / "cloudsim.log",
    )
    process.start()
    try:
        urls = _wait_for_process(process, lambda: json.loads(ready.read_text()) if ready.exists() else None, 30)
    except BaseException:
        process.terminate()
        raise
    return CloudSim(process=process, hss_url=urls["hss"], sas_url=urls["sas"], pki=pki)


@pytest.fixture(scope="session", name="cloudsim")
def cloudsim_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSim]:
    """cloudsim for the whole session; terminated at the end."""
    sim = start_cloudsim(tmp_path_factory.mktemp("cloudsim"))
    try:
        yield sim
    finally:
        sim.process.terminate()


def _wait_for_process(process: ManagedProcess, probe: Callable[[], T | None], timeout: float) -> T:
    """Poll ``probe`` while ``process`` runs; fail with its log tail if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if not process.is_running():
            pytest.fail(f"{process.name} exited during start-up\n{process.describe_log()}")
        with contextlib.suppress(OSError, ValueError, httpx.HTTPError):
            value = probe()
            if value is not None and value is not False:
                return value
        if time.monotonic() > deadline:
            pytest.fail(f"{process.name} was not ready after {timeout:.0f}s\n{process.describe_log()}")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ CRD


@pytest.fixture(scope="session", name="crd")
def crd_fixture(kube: Kube) -> Iterator[dict[str, Any]]:
    """The ImageGatePolicy CRD, applied from the chart and Established; deleted at the end."""
    kube.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    kube.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    try:
        yield kube.get("crd", CRD_NAME)
    finally:
        kube.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=false", check=False)


@contextlib.contextmanager
def established_crd(kube: Kube, name: str) -> Iterator[None]:
    """Wait for the CRD ``name``, just applied, to be Established; delete it afterwards (waiting up to 60 s).

    For the CRDs a module installs for itself, so the other modules' image-gates see a cluster without them.
    """
    kube.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    try:
        yield
    finally:
        kube.kubectl("delete", "crd", name, "--ignore-not-found", "--timeout=60s", check=False)


# ----------------------------------------------------------------------------------------- image-gate


@dataclass
class ImageGate:
    """One ``image-gate run`` process on loopback, and how to talk to it."""

    workdir: Path
    env: dict[str, str]
    port: int
    health_port: int
    cert_args: list[str]
    ca_file: Path
    """The CA the API server (and tests) verify the webhook with."""
    process: EnvProcess = field(init=False)

    def __post_init__(self) -> None:
        argv = [
            str(Path(sys.executable).with_name("image-gate")),
            "run",
            "--listen-address",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--health-port",
            str(self.health_port),
            "--webhook-host",
            "127.0.0.1",
            *self.cert_args,
        ]
        self.process = EnvProcess("image-gate", argv, self.workdir / "image-gate.log", env=self.env)

    @property
    def url(self) -> str:
        """Base URL of the webhook (the chart's ``webhook.url``)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> str:
        """The webhook CA, base64 PEM (the chart's ``webhook.caBundle``)."""
        return base64.b64encode(self.ca_file.read_bytes()).decode()

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the process (env holds KUBECONFIG and the cloud settings) and wait for /readyz."""
        self.process.start()
        try:
            self.wait_ready(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        """Until ``/readyz`` answers 200: the policy and namespace indexes are loaded, the webhook listens."""
        _wait_for_process(self.process, lambda: self.health("/readyz").status_code == 200 or None, timeout)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) the process; idempotent."""
        self.process.terminate()

    def health(self, path: str) -> httpx.Response:
        """GET a path of the health server (``/healthz``, ``/readyz``, ``/metrics``)."""
        with self._client() as client:
            return client.get(f"https://127.0.0.1:{self.health_port}{path}")

    def review(self, path: str, review: Mapping[str, Any]) -> dict[str, Any]:
        """POST an AdmissionReview to ``/<path>`` as the API server would; return the response part."""
        with self._client() as client:
            answer = client.post(f"{self.url}/{path.lstrip('/')}", json=dict(review), timeout=15)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        assert body["apiVersion"] == "admission.k8s.io/v1", body
        assert body["kind"] == "AdmissionReview", body
        response: dict[str, Any] = body["response"]
        assert response["uid"] == review["request"]["uid"], "the response must echo the request uid"
        return response

    def metric_value(self, name: str, labels: Mapping[str, str]) -> float:
        """The value of one sample of ``/metrics`` (0 when the sample is absent)."""
        wanted = {f'{key}="{value}"' for key, value in labels.items()}
        for line in self.health("/metrics").text.splitlines():
            if not line.startswith(name + "{"):
                continue
            label_text = line[len(name) + 1 : line.rindex("}")]
            if wanted <= set(label_text.split(",")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def describe_log(self) -> str:
        """The tail of image-gate's log, for failure messages."""
        return self.process.describe_log(60)

    def _client(self) -> httpx.Client:
        return httpx.Client(verify=_verify(self.ca_file), trust_env=False, timeout=10)


class EnvProcess(ManagedProcess):
    """A `ManagedProcess` started with an environment of its own instead of ``os.environ``."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str]) -> None:
        super().__init__(name, argv, log_path)
        self.env = dict(env)

    def start(self) -> None:
        """Start in its own session, output to the log file, SIGTERMed if the test runner dies."""
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )


_CLOUD_VARIABLE_PREFIXES = ("IMAGE_GATE_", "HUAWEICLOUD_", "HC_", "ALIBABA_CLOUD_", "ALICLOUD_")


def service_account_kubeconfig(control_plane: ControlPlane, token: str, path: Path) -> Path:
    """A kubeconfig at ``path`` that talks to the control plane with a service account's token."""
    cluster = {"server": control_plane.server_url, "certificate-authority": str(control_plane.ca_path)}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "cp", "cluster": cluster}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "cp", "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return path


CORE_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["imagegate.io"], "resources": ["imagegatepolicies"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["imagegate.io"], "resources": ["imagegatepolicies/status"], "verbs": ["patch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
"""What every replica may do whatever else it is denied: read its policies, write their status, discover CRDs,
read namespaces, record Events. The tests of a service account short of some rights add what it keeps."""


def cluster_role_account(name: str, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A ServiceAccount ``name`` in image-gate's namespace, a ClusterRole ``name`` of ``rules`` and their binding."""
    subject = {"kind": "ServiceAccount", "name": name, "namespace": IMAGE_GATE_NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": IMAGE_GATE_NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [dict(rule) for rule in rules],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        },
    ]


def image_gate_as(
    account: str, workdir: Path, control_plane: ControlPlane, kube: Kube, sim: CloudSim, catalogue: Catalogue
) -> ImageGate:
    """An `ImageGate` (not started) that talks to the API server as ``account`` of image-gate's namespace.

    Its kubeconfig (``workdir/sa.kubeconfig``) carries a token of the account valid for an hour.
    """
    token = kube.kubectl("create", "token", account, "-n", IMAGE_GATE_NAMESPACE, "--duration=1h").stdout.strip()
    gate = new_image_gate(workdir, control_plane, sim, catalogue)
    kubeconfig = service_account_kubeconfig(control_plane, token, workdir / "sa.kubeconfig")
    gate.process.env["KUBECONFIG"] = str(kubeconfig)
    return gate


def image_gate_env(control_plane: ControlPlane, sim: CloudSim, catalogue: Catalogue) -> dict[str, str]:
    """image-gate's environment: the admin kubeconfig, cloudsim's endpoints and CA, catalogue credentials.

    Cloud and image-gate variables of the outer environment are dropped, so a developer's real
    credentials can neither leak into the test nor change its outcome.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLOUD_VARIABLE_PREFIXES)}
    env.update(control_plane.env())
    huawei = next((c for c in catalogue.huawei_credentials if not c.security_token), None)
    aliyun = next((c for c in catalogue.aliyun_credentials if not c.security_token), None)
    if huawei is None or aliyun is None:
        pytest.fail(f"{CATALOGUE_PATH} needs a plain Huawei AK/SK and a plain Alibaba AccessKey")
    env.update(
        {
            "IMAGE_GATE_NAMESPACE": IMAGE_GATE_NAMESPACE,
            "IMAGE_GATE_HSS_ENDPOINT": sim.hss_url,
            "IMAGE_GATE_SAS_ENDPOINT": sim.sas_url,
            "IMAGE_GATE_CLOUD_CA_FILE": str(sim.ca_file),
            "IMAGE_GATE_LOG_FORMAT": "json",
            # Tests stop image-gate often and nothing balances load here; test_hardening_drain sets its own.
            "IMAGE_GATE_DRAIN_SECONDS": "0.5",
            "HUAWEICLOUD_SDK_AK": huawei.ak,
            "HUAWEICLOUD_SDK_SK": huawei.sk,
            "HUAWEICLOUD_SDK_PROJECT_ID": huawei.project_id,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": aliyun.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": aliyun.access_key_secret,
        }
    )
    return env


def new_image_gate(
    workdir: Path,
    control_plane: ControlPlane,
    sim: CloudSim,
    catalogue: Catalogue,
    *,
    generated_certificate: bool = False,
) -> ImageGate:
    """An `ImageGate` (not started) on free ports.

    By default it serves a certificate from a throwaway test CA passed with ``--cert-file``; with
    ``generated_certificate`` it generates its own development CA into ``--cert-dir`` (``ca.crt``),
    which only exists once the process has started.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port, health_port = free_ports(2)
    if generated_certificate:
        cert_dir = workdir / "certs"
        cert_args, ca_file = ["--cert-dir", str(cert_dir)], cert_dir / "ca.crt"
    else:
        pki = make_pki(workdir / "tls", hosts=("127.0.0.1",))
        cert_args = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file)]
        ca_file = pki.ca_file
    return ImageGate(
        workdir=workdir,
        env=image_gate_env(control_plane, sim, catalogue),
        port=port,
        health_port=health_port,
        cert_args=cert_args,
        ca_file=ca_file,
    )


@pytest.fixture(scope="session", name="image_gate")
def image_gate_fixture(
    control_plane: ControlPlane,
    kube: Kube,
    crd: dict[str, Any],
    cloudsim: CloudSim,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageGate]:
    """The session's image-gate process, ready (indexes loaded, webhook listening)."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IMAGE_GATE_NAMESPACE}})
    gate = new_image_gate(tmp_path_factory.mktemp("image-gate"), control_plane, cloudsim, catalogue)
    try:
        gate.start()
        yield gate
    finally:
        gate.stop()
        kube.kubectl("delete", "namespace", IMAGE_GATE_NAMESPACE, "--wait=false", "--ignore-not-found", check=False)


# ------------------------------------------------------------------------------ webhook configuration


def render_webhook_configuration(
    kube: Kube,
    *,
    release: str,
    url: str,
    ca_bundle: str,
    namespace_labels: Mapping[str, str],
    failure_policy: str = "Fail",
    namespace: str = IMAGE_GATE_NAMESPACE,
) -> dict[str, Any]:
    """The chart's ValidatingWebhookConfiguration from ``helm template``, aimed at a local image-gate."""
    values = {
        "webhook": {
            "url": url,
            "caBundle": ca_bundle,
            "failurePolicy": failure_policy,
            "namespaceSelector": {"matchLabels": dict(namespace_labels)},
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        rendered = kube.helm(
            "template",
            release,
            str(CHART_DIR),
            "--namespace",
            namespace,
            "--show-only",
            "templates/validatingwebhookconfiguration.yaml",
            "--values",
            str(values_file),
        )
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert len(documents) == 1, rendered.stdout
    assert documents[0]["kind"] == "ValidatingWebhookConfiguration", rendered.stdout
    configuration: dict[str, Any] = documents[0]
    return configuration


@contextlib.contextmanager
def applied(kube: Kube, manifest: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Apply a cluster-scoped object for the duration of a ``with`` block, then delete it."""
    kube.apply(manifest)
    try:
        yield dict(manifest)
    finally:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        kube.kubectl("delete", kind.lower(), name, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="session", name="webhook_configuration")
def webhook_configuration_fixture(kube: Kube, image_gate: ImageGate, e2e_token: str) -> Iterator[dict[str, Any]]:
    """The session webhook configuration (failurePolicy Fail), pointing at the session image-gate."""
    configuration = render_webhook_configuration(
        kube,
        release=SESSION_RELEASE,
        url=image_gate.url,
        ca_bundle=image_gate.ca_bundle,
        namespace_labels={E2E_LABEL: e2e_token},
    )
    with applied(kube, configuration) as live:
        yield live


# ------------------------------------------------------------------------------------------- policies


def scoped_policy(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """An ImageGatePolicy whose ``namespaceSelector`` selects only ``namespace`` (test isolation)."""
    full_spec = dict(spec)
    match = dict(full_spec.get("match") or {})
    match["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    full_spec["match"] = match
    return {
        "apiVersion": "imagegate.io/v1alpha1",
        "kind": "ImageGatePolicy",
        "metadata": {"name": name},
        "spec": full_spec,
    }


@dataclass
class PolicyFactory:
    """Applies ImageGatePolicies for one test and deletes them afterwards."""

    kube: Kube
    names: list[str] = field(default_factory=list)

    def apply(self, manifest: Mapping[str, Any], *, wait: bool = True) -> dict[str, Any]:
        """Apply a policy; with ``wait``, return it once image-gate has reported on this generation."""
        name = manifest["metadata"]["name"]
        if name not in self.names:
            self.names.append(name)
        self.kube.apply(manifest)
        if not wait:
            return dict(manifest)
        return self.wait_observed(name)

    def wait_observed(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The policy, once its Ready condition is about its current generation.

        image-gate writes the status after indexing the policy, so from then on admission
        uses this generation.
        """

        def observed() -> dict[str, Any] | None:
            policy: dict[str, Any] | None = self.kube.get_or_none("imagegatepolicy", name)
            if policy is None:
                return None
            generation = policy["metadata"]["generation"]
            ready = ready_condition(policy)
            if ready and ready.get("observedGeneration") == generation:
                return policy
            return None

        return wait_for(observed, what=f"image-gate to report on policy {name}", timeout=timeout)

    def delete_all(self) -> None:
        """Delete every policy this factory applied."""
        if self.names:
            self.kube.kubectl("delete", "imagegatepolicy", *self.names, "--ignore-not-found", check=False)
        self.names.clear()

    def __enter__(self) -> PolicyFactory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leaving a ``with`` block deletes every policy applied, whatever happened in it."""
        self.delete_all()


def ready_condition(policy: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``Ready`` condition of a policy's status, if any."""
    for condition in (policy.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


@pytest.fixture(name="policies")
def policies_fixture(kube: Kube, crd: dict[str, Any]) -> Iterator[PolicyFactory]:
    """Apply policies in a test; they are deleted when it ends."""
    with PolicyFactory(kube) as factory:
        yield factory


# ------------------------------------------------------------------------------------------ manifests


def pod_manifest(
    name: str,
    namespace: str,
    image: str,
    *,
    container: str | None = None,
    init_image: str | None = None,
) -> dict[str, Any]:
    """A minimal Pod with one container (and optionally one init container)."""
    spec: dict[str, Any] = {"containers": [{"name": container or name, "image": image}]}
    if init_image:
        spec["initContainers"] = [{"name": "init", "image": init_image}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def deployment_manifest(name: str, namespace: str, image: str, *, replicas: int = 1) -> dict[str, Any]:
    """A Deployment of one container named after the Deployment."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}},
        },
    }


def cronjob_manifest(name: str, namespace: str, image: str) -> dict[str, Any]:
    """A CronJob (hourly) with one container named after it."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": "0 * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [{"name": name, "image": image}]},
                    }
                }
            },
        },
    }


_RESOURCES = {
    "Pod": ("", "pods"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "ReplicaSet": ("apps", "replicasets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
}


def admission_review(
    obj: Mapping[str, Any],
    *,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    sub_resource: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """An ``admission.k8s.io/v1`` AdmissionReview request, shaped as kube-apiserver sends it."""
    kind = obj["kind"]
    group, resource = _RESOURCES[kind]
    metadata = obj.get("metadata") or {}
    options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}[operation]
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": resource},
        "requestKind": {"group": group, "version": "v1", "kind": kind},
        "requestResource": {"group": group, "version": "v1", "resource": resource},
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
        "operation": operation,
        "userInfo": {"username": "e2e-tester", "groups": ["system:authenticated"]},
        "object": dict(obj),
        "oldObject": dict(old) if old is not None else None,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
    }
    if sub_resource:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
