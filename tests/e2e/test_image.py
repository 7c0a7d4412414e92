"""The container image itself, end to end: built by ``scripts/build-image.sh``, run by buildah.

The image's own entrypoint and command (``image-gate run``), as its own user, serve the webhook
for the harness's kube-apiserver: the CRD, the example policies, one pod admitted and one denied
through kubectl. Then the container gets SIGTERM, as the kubelet sends it, and must exit 0 within
the chart's grace period, having written nothing outside ``/tmp`` (the chart runs it with a
read-only root filesystem and an emptyDir on ``/tmp``).

buildah runs the container with ``--isolation chroot`` on the host network: no runtime (runc,
crun) is needed, which is what these machines allow. What the chart would mount comes in the
same way: the serving certificate, a kubeconfig (instead of the service account token), the
cloud credentials as environment variables, and cloudsim's test CA.

Skipped without buildah or without the image (``bash scripts/build-image.sh``); with CI set, a
missing image fails instead, so a broken image build cannot pass as green.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness import ControlPlane
from harness.process import _die_with_parent, free_ports

from cloudsim.catalogue import Catalogue
from tests.e2e.imagegate import (
    CENTOS_IMAGE,
    CHART_DIR,
    E2E_LABEL,
    UBUNTU_IMAGE,
    CloudSim,
    Kube,
    PolicyFactory,
    applied,
    image_gate_env,
    make_namespace,
    render_webhook_configuration,
    scoped_policy,
)
from tests.tlsutil import make_pki

pytestmark = [pytest.mark.e2e, pytest.mark.image]

IMAGE = "localhost/image-gate:dev"
"""What ``scripts/build-image.sh`` builds."""
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "policies"
NONROOT = "65532"
GRACE_SECONDS = 30.0
"""The chart's terminationGracePeriodSeconds: how long the kubelet waits after SIGTERM."""
CONTAINER_NAMESPACE = "image-gate-image"
"""IMAGE_GATE_NAMESPACE of the container: its own Lease and events, apart from the session's
local image-gate process (tests/e2e/imagegate.py), which may be running at the same time."""
INPUTS = "/etc/image-gate"
"""Where the container finds what the chart would mount (read-only)."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _missing(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def buildah(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``buildah ARGS`` with captured output; with ``check`` a failure fails the test with both outputs."""
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"`buildah {' '.join(args)}` exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


# ----------------------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class ImageConfig:
    """The OCI configuration of the built image: what a container runtime would run, and as whom."""

    user: str
    entrypoint: list[str]
    cmd: list[str]
    labels: dict[str, str]
    env: dict[str, str]


@pytest.fixture(scope="module", name="image")
def image_fixture() -> ImageConfig:
    """The image's configuration; skips (locally) or fails (CI) without buildah or the image."""
    if shutil.which("buildah") is None:
        _missing("buildah is not installed (scripts/build-image.sh installs it)")
    inspected = buildah("inspect", "--type", "image", IMAGE, check=False)
    if inspected.returncode != 0:
        _missing(f"{IMAGE} is not in local storage (build it: bash scripts/build-image.sh)")
    config = json.loads(inspected.stdout)["OCIv1"]["config"]
    return ImageConfig(
        user=config.get("User", ""),
        entrypoint=list(config.get("Entrypoint") or []),
        cmd=list(config.get("Cmd") or []),
        labels=dict(config.get("Labels") or {}),
        env=dict(entry.split("=", 1) for entry in config.get("Env") or []),
    )


@dataclass
class Container:
    """A buildah working container of the image; removed by `remove`."""

    name: str = field(default_factory=lambda: f"image-gate-e2e-{uuid.uuid4().hex[:8]}")

    def create(self) -> Container:
        buildah("from", "--quiet", "--name", self.name, IMAGE)
        return self

    def run_argv(
        self, command: list[str], *, env: Mapping[str, str] = {}, volumes: Mapping[Path, str] = {}
    ) -> list[str]:
        """``buildah run`` of ``command`` in this container: host network, the image's user and workdir."""
        argv = ["buildah", "run", "--isolation", "chroot"]
        for source, target in volumes.items():
            argv += ["--volume", f"{source}:{target}:ro"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.name, "--", *command]

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a short command to completion (``check=False``: the caller looks at the exit code)."""
        return subprocess.run(self.run_argv(list(command)), capture_output=True, text=True, timeout=60, check=False)

    def writable_layer(self) -> Path:
        """The container's own overlay layer: every file it created or changed, and nothing else."""
        mount_point = Path(buildah("mount", self.name).stdout.strip())
        return mount_point.parent / "diff"

    def remove(self) -> None:
        buildah("umount", self.name, check=False)
        buildah("rm", self.name, check=False)


@pytest.fixture(name="container")
def container_fixture(image: ImageConfig) -> Iterator[Container]:
    """A fresh working container of the image, removed afterwards."""
    container = Container().create()
    try:
        yield container
    finally:
        container.remove()


def test_image_runs_as_nonroot_without_installers_or_compilers(image: ImageConfig, container: Container) -> None:
    assert image.user == f"{NONROOT}:{NONROOT}"
    assert (image.entrypoint, image.cmd) == (["image-gate"], ["run"])

    identity = container.run("id", "-u")
    assert identity.stdout == f"{NONROOT}\n", identity.stderr

    # Nothing installs or builds software at run time: no pip (as a command or a module), no compiler.
    tools = container.run("sh", "-c", "for tool in pip pip3 gcc cc c++ make; do command -v $tool; done; true")
    assert tools.stdout == "", tools.stdout
    no_pip = container.run("python3", "-m", "pip", "--version")
    assert no_pip.returncode == 1
    assert "No module named pip" in no_pip.stderr

    revision = image.labels["org.opencontainers.image.revision"]
    version = image.labels["org.opencontainers.image.version"]
    assert revision not in {"", "unknown"}
    assert image.env["IMAGE_GATE_REVISION"] == revision
    printed = container.run(*image.entrypoint, "version")
    assert printed.stdout == f"image-gate {version} (revision {revision})\n", printed.stderr

    # The chart's default image (repository and appVersion) is this very image.
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert (values["image"]["tag"], chart["appVersion"]) == ("", version)
    default_image = f"{values['image']['repository']}:{chart['appVersion']}"
    image_ids = {
        name: buildah("images", "--noheading", "--format", "{{.ID}}", name).stdout for name in (IMAGE, default_image)
    }
    assert image_ids[default_image] == image_ids[IMAGE], image_ids


# -------------------------------------------------------------------------- the image as the webhook


@dataclass
class RunningImage:
    """``image-gate run`` from the image (its entrypoint and command), configured as the chart would.

    buildah does not pass SIGTERM on to the container (it kills it), so `stop` signals the
    container's main process itself, as a container runtime does when the kubelet stops a pod.
    """

    container: Container
    argv: list[str]
    log_path: Path
    port: int
    health_port: int
    ca_file: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def ready(self) -> bool:
        """``/readyz`` answers 200 (policies and namespaces indexed, the webhook listening)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with contextlib.suppress(httpx.HTTPError), httpx.Client(verify=context, trust_env=False, timeout=5) as client:
            return client.get(f"https://127.0.0.1:{self.health_port}/readyz").status_code == 200
        return False

    def main_process(self) -> int:
        """The pid of the container's command: the child of buildah's ``buildah-chroot-exec``."""
        assert self.popen is not None
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        pending = [self.popen.pid]
        while pending:
            pid = pending.pop()
            with contextlib.suppress(OSError):
                if (Path("/proc") / str(pid) / "cmdline").read_bytes().startswith(b"buildah-chroot-exec\0"):
                    (main,) = children.get(pid, [])
                    return main
            pending.extend(children.get(pid, []))
        pytest.fail(f"no container process under buildah run (pid {self.popen.pid})\n{self.describe_log()}")

    def stop(self, *, grace_seconds: float) -> int | None:
        """SIGTERM the container's process; its exit code, or None if the grace period ran out (then SIGKILL)."""
        assert self.popen is not None
        os.kill(self.main_process(), signal.SIGTERM)
        try:
            return self.popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL buildah run and the container (idempotent)."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)

    def describe_log(self, lines: int = 60) -> str:
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}\n--- end ---"


def _inputs(directory: Path, kube: Kube, sim: CloudSim) -> tuple[Path, Path]:
    """What the chart would mount, readable by the image's user: TLS pair, kubeconfig, cloud CA.

    The kubeconfig is flattened (certificates and key inline): the harness's one names files in
    its private directory, which the container cannot read.
    """
    directory.mkdir(parents=True)
    pki = make_pki(directory / "pki", hosts=("127.0.0.1",))
    shutil.copyfile(pki.cert_file, directory / "tls.crt")
    shutil.copyfile(pki.key_file, directory / "tls.key")
    shutil.copyfile(sim.ca_file, directory / "cloud-ca.crt")
    flat = kube.kubectl("config", "view", "--raw", "--flatten", "--minify").stdout
    (directory / "kubeconfig").write_text(flat)
    for name in ("tls.crt", "tls.key", "cloud-ca.crt", "kubeconfig"):
        (directory / name).chmod(0o644)
    directory.chmod(0o755)
    return directory, pki.ca_file


_CLOUD_VARIABLE_PREFIXES = ("IMAGE_GATE_", "HUAWEICLOUD_", "ALIBABA_CLOUD_")


@pytest.fixture(name="running_image")
def running_image_fixture(
    image: ImageConfig,
    container: Container,
    control_plane: ControlPlane,
    kube: Kube,
    crd: dict[str, Any],
    cloudsim: CloudSim,
    catalogue: Catalogue,
    tmp_path: Path,
) -> Iterator[RunningImage]:
    """The image serving on free loopback ports, ready; SIGKILLed afterwards if a test left it running."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTAINER_NAMESPACE}})
    inputs, ca_file = _inputs(tmp_path / "inputs", kube, cloudsim)
    port, health_port = free_ports(2)
    # The same credentials and endpoints as the local process, but only the cloud and image-gate
    # variables: PATH, HOME and the rest come from the image.
    env = {
        k: v
        for k, v in image_gate_env(control_plane, cloudsim, catalogue).items()
        if k.startswith(_CLOUD_VARIABLE_PREFIXES)
    }
    # The image's own drain after SIGTERM (the e2e process shortens it): the stop below must fit
    # the grace period as shipped.
    env.pop("IMAGE_GATE_DRAIN_SECONDS", None)
    env.update(
        {
            "IMAGE_GATE_NAMESPACE": CONTAINER_NAMESPACE,
            "IMAGE_GATE_LISTEN_ADDRESS": "127.0.0.1",
            "IMAGE_GATE_PORT": str(port),
            "IMAGE_GATE_HEALTH_PORT": str(health_port),
            "IMAGE_GATE_CERT_FILE": f"{INPUTS}/tls.crt",
            "IMAGE_GATE_KEY_FILE": f"{INPUTS}/tls.key",
            "IMAGE_GATE_CLOUD_CA_FILE": f"{INPUTS}/cloud-ca.crt",
            "KUBECONFIG": f"{INPUTS}/kubeconfig",
        }
    )
    argv = container.run_argv([*image.entrypoint, *image.cmd], env=env, volumes={inputs: INPUTS})
    running = RunningImage(container, argv, tmp_path / "image-gate-container.log", port, health_port, ca_file)
    running.start()
    try:
        deadline = time.monotonic() + 60
        while not running.ready():
            if not running.is_running():
                pytest.fail(f"the container exited during start-up\n{running.describe_log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the container was not ready after 60s\n{running.describe_log()}")
            time.sleep(0.2)
        yield running
    finally:
        running.kill()
        kube.kubectl("delete", "namespace", CONTAINER_NAMESPACE, "--wait=false", "--ignore-not-found", check=False)


def example_policy(example: str, namespace: str) -> dict[str, Any]:
    """A policy from examples/policies/, renamed ``<example>-<namespace>`` and scoped to ``namespace``."""
    document = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    return scoped_policy(f"{example}-{namespace}", namespace, copy.deepcopy(document["spec"]))


@pytest.mark.timeout(240)  # start-up (up to 60s), then kubectl, then up to GRACE_SECONDS to stop
def test_image_serves_the_webhook_and_stops_on_sigterm(
    running_image: RunningImage, kube: Kube, policies: PolicyFactory, e2e_token: str
) -> None:
    # Only namespaces with this label value go to the container's webhook configuration: the
    # session's local image-gate (label value e2e_token) never sees them, nor the container its.
    label_value = f"image-{e2e_token}"
    namespace = make_namespace(kube, "image", {E2E_LABEL: label_value})
    configuration = render_webhook_configuration(
        kube,
        release="image",
        url=running_image.url,
        ca_bundle=base64.b64encode(running_image.ca_file.read_bytes()).decode(),
        namespace_labels={E2E_LABEL: label_value},
    )
    try:
        with applied(kube, configuration):
            base_os = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]
            policies.apply(example_policy("pinned-acr", namespace))

            created = kube.kubectl("run", "api", f"--image={UBUNTU_IMAGE}", "--namespace", namespace)
            assert (created.stdout, created.stderr) == ("pod/api created\n", "")

            refused = kube.kubectl("run", "legacy", f"--image={CENTOS_IMAGE}", "--namespace", namespace, check=False)
            assert refused.returncode == 1
            assert refused.stderr == (
                'Error from server (Forbidden): admission webhook "pods.imagegate.io" denied the request: '
                f"image-gate denied Pod {namespace}/legacy: 2 violations\n"
                f'- container "legacy" (image {CENTOS_IMAGE}): policy "{base_os}" rule baseImage.allowedOS: '
                "found CentOS Linux 7.9.2009, expected one of Debian >=11, Ubuntu 22.04 or 24.04\n"
                f'- container "legacy" (image {CENTOS_IMAGE}): policy "{base_os}" rule baseImage.deniedOS: '
                "found CentOS Linux 7.9.2009, expected not CentOS\n"
            )
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)

    # The kubelet's stop: SIGTERM, then SIGKILL once the grace period is over.
    main = running_image.main_process()
    assert _uid(main) == NONROOT, "the image's USER runs its entrypoint"
    began = time.monotonic()
    exit_code = running_image.stop(grace_seconds=GRACE_SECONDS)
    assert exit_code == 0, running_image.describe_log()
    stopped_in = time.monotonic() - began

    # Read-only root: the container's own layer holds nothing outside /tmp but directories buildah
    # itself makes: the inputs' mount point (and its parent) and /run (a plain `buildah run true`
    # leaves that too).
    layer = running_image.container.writable_layer()
    written = sorted("/" + str(path.relative_to(layer)) for path in layer.rglob("*"))
    buildah_made = {"/run", "/etc", INPUTS, "/tmp"}
    assert [path for path in written if path not in buildah_made and not path.startswith("/tmp/")] == []
    in_tmp = sum(path.startswith("/tmp/") for path in written)
    print(f"image-gate container: stopped {stopped_in:.1f}s after SIGTERM, wrote {in_tmp} paths in /tmp")


def _uid(pid: int) -> str:
    """The real uid of a process, from /proc."""
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("Uid:"):
            return line.split()[1]
    pytest.fail(f"no Uid line for pid {pid}")
