"""``image-gate check`` as a user runs it: the real command, the real clients, cloudsim over HTTPS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudsim.catalogue import Catalogue
from cloudsim.server import SimState, Simulators
from tests.tlsutil import make_pki

CATALOGUE = Catalogue.load()
WEB = "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0"
WEB_DIGEST = next(image.digest for image in CATALOGUE.images if str(image.reference) == WEB)
OTHER_DIGEST = "sha256:" + "0" * 64

PINNED_POLICY = """\
apiVersion: imagegate.io/v1alpha1
kind: ImageGatePolicy
metadata:
  name: pinned-acr
spec:
  match:
    images: ["*.*.cr.aliyuncs.com/**"]
  digest:
    matchRegistry: true
"""


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    # Every run of the command is a new process with a fresh client-side quota; the quota itself
    # is tested with the clients, so here neither side limits.
    state = SimState(catalogue=CATALOGUE, hss_rate=None)
    with Simulators(CATALOGUE, ssl_context=pki.server_context(), state=state) as sim:
        aliyun = CATALOGUE.aliyun_credentials[0]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("HUAWEICLOUD_", "ALIBABA_CLOUD_", "IMAGE_GATE_", "HC_"))
        }
        env.update(
            IMAGE_GATE_SAS_ENDPOINT=sim.sas_url,
            IMAGE_GATE_HSS_ENDPOINT=sim.hss_url,
            IMAGE_GATE_CLOUD_CA_FILE=str(pki.ca_file),
            IMAGE_GATE_HSS_RATE="100/1",
            ALIBABA_CLOUD_ACCESS_KEY_ID=aliyun.access_key_id,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=aliyun.access_key_secret,
        )
        if CATALOGUE.huawei_credentials:
            huawei = CATALOGUE.huawei_credentials[0]
            env.update(
                HUAWEICLOUD_SDK_AK=huawei.ak,
                HUAWEICLOUD_SDK_SK=huawei.sk,
                HUAWEICLOUD_SDK_PROJECT_ID=huawei.project_id,
            )
        yield env


def check(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "image_gate", "check", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def policy_file(path: Path, text: str) -> Path:
    """``text`` written to ``path``, for ``--policy``."""
    path.write_text(text)
    return path


@pytest.fixture
def pinned_policy(tmp_path: Path) -> Path:
    return policy_file(tmp_path / "pinned.yaml", PINNED_POLICY)


def test_a_digest_matching_the_registry_is_allowed(environment: dict[str, str], pinned_policy: Path) -> None:
    result = check(environment, f"{WEB}@{WEB_DIGEST}", "--policy", str(pinned_policy))
    assert (result.returncode, result.stdout, result.stderr) == (0, "allowed (pinned-acr)\n", "")


def test_a_stale_pinned_digest_is_denied_with_both_digests(environment: dict[str, str], pinned_policy: Path) -> None:
    image = f"{WEB}@{OTHER_DIGEST}"
    result = check(environment, image, "--policy", str(pinned_policy))
    assert result.returncode == 1
    assert result.stdout == (
        "image-gate denied Pod default/image-gate-check: 1 violation\n"
        f'- container "image-1" (image {image}): policy "pinned-acr" rule digest.matchRegistry: '
        f"found pinned {OTHER_DIGEST}, expected {WEB_DIGEST}, the registry's digest for tag 2.0\n"
    )


def test_json_output_lists_findings(environment: dict[str, str], pinned_policy: Path) -> None:
    result = check(environment, f"{WEB}@{OTHER_DIGEST}", "nginx:1.27", "--policy", str(pinned_policy), "-o", "json")
    document = json.loads(result.stdout)
    assert result.returncode == 1
    assert document["allowed"] is False
    assert [(f["image"], f["rule"], f["problem"], f["denies"]) for f in document["findings"]] == [
        (f"{WEB}@{OTHER_DIGEST}", "digest.matchRegistry", "violation", True)
    ]
    # Values, not prose: what was pinned, and what the registry has for the tag.
    [finding] = document["findings"]
    assert finding["found"] == {"type": "pinned_digest", "digest": OTHER_DIGEST}
    assert finding["expected"] == {"type": "registry_digest", "digest": WEB_DIGEST, "tag": "2.0"}
    assert document["stale"] == [], "a fresh process has no cache to answer stale from"


def test_an_image_the_registry_does_not_know_is_unresolved(environment: dict[str, str], pinned_policy: Path) -> None:
    image = f"demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/missing:1@{OTHER_DIGEST}"
    result = check(environment, image, "--policy", str(pinned_policy))
    assert result.returncode == 1
    assert "rule digest.matchRegistry could not be checked (lookup failure, onUnresolved=Deny)" in result.stdout


def test_a_bad_policy_file_names_the_file_and_the_field(environment: dict[str, str], tmp_path: Path) -> None:
    path = policy_file(
        tmp_path / "broken.yaml",
        PINNED_POLICY
        + "---\n"
        + PINNED_POLICY.replace("pinned-acr", "second").replace(
            "matchRegistry: true",
            "matchRegistry: true\n  baseImage:\n    allowedOS: [{name: Debian, versions: ['>=x']}]",
        ),
    )
    result = check(environment, WEB, "--policy", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"image-gate: {path} (document 2): policy 'second': spec.baseImage.allowedOS[0].versions[0]: "
        "'>=x': >= needs a numeric version, not 'x'\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: Pod\napiVersion: v1\n", "apiVersion/kind must be imagegate.io/v1alpha1 ImageGatePolicy, not v1 Pod"),
        ("{", "not valid YAML"),
        ("", "holds no policy"),
    ],
)
def test_unreadable_policy_files_exit_2(
    environment: dict[str, str], tmp_path: Path, content: str, message: str
) -> None:
    path = policy_file(tmp_path / "policy.yaml", content)
    result = check(environment, WEB, "--policy", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert str(path) in result.stderr


def test_a_missing_policy_file_exits_2(environment: dict[str, str], tmp_path: Path) -> None:
    result = check(environment, WEB, "--policy", str(tmp_path / "nope.yaml"))
    assert (result.returncode, result.stderr) == (
        2,
        f"image-gate: {tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n",
    )


BASE_OS_POLICY = """\
apiVersion: imagegate.io/v1alpha1
kind: ImageGatePolicy
metadata:
  name: approved-base-os
spec:
  match:
    images: ["swr.*.myhuaweicloud.com/**"]
  baseImage:
    allowedOS:
      - {name: Debian, versions: [">=11"]}
      - {name: Ubuntu, versions: ["22.04", "24.04"]}
    deniedOS: [{name: CentOS}]
"""
SWR = "swr.cn-north-4.myhuaweicloud.com/demo"


@pytest.fixture
def base_os_policy(tmp_path: Path) -> Path:
    return policy_file(tmp_path / "base-os.yaml", BASE_OS_POLICY)


def test_approved_base_images_are_allowed(environment: dict[str, str], base_os_policy: Path) -> None:
    result = check(
        environment, f"{SWR}/api:1.4.2", f"{SWR}/worker:3.1.0", "nginx:1.27", "--policy", str(base_os_policy)
    )
    assert (result.returncode, result.stdout) == (0, "allowed (approved-base-os)\n")


def test_unapproved_base_images_are_denied_naming_the_os_hss_reported(
    environment: dict[str, str], base_os_policy: Path
) -> None:
    result = check(environment, f"{SWR}/legacy-batch:2.3.0", f"{SWR}/api:1.4.1", "--policy", str(base_os_policy))
    assert result.returncode == 1
    assert result.stdout == (
        "image-gate denied Pod default/image-gate-check: 3 violations\n"
        f'- container "image-1" (image {SWR}/legacy-batch:2.3.0): policy "approved-base-os" rule '
        "baseImage.allowedOS: found CentOS Linux 7.9.2009, expected one of Debian >=11, Ubuntu 22.04 or 24.04\n"
        f'- container "image-1" (image {SWR}/legacy-batch:2.3.0): policy "approved-base-os" rule '
        "baseImage.deniedOS: found CentOS Linux 7.9.2009, expected not CentOS\n"
        f'- container "image-2" (image {SWR}/api:1.4.1): policy "approved-base-os" rule '
        "baseImage.allowedOS: found Ubuntu 20.04, expected one of Debian >=11, Ubuntu 22.04 or 24.04\n"
    )


def test_an_unscanned_image_follows_on_unresolved(environment: dict[str, str], base_os_policy: Path) -> None:
    denied = check(environment, f"{SWR}/nightly:2025.01.01", "--policy", str(base_os_policy))
    assert denied.returncode == 1
    assert "rule baseImage could not be checked (lookup failure, onUnresolved=Deny)" in denied.stdout

    lenient = policy_file(
        base_os_policy.with_name("lenient.yaml"), BASE_OS_POLICY.replace("spec:\n", "spec:\n  onUnresolved: Allow\n")
    )
    allowed = check(environment, f"{SWR}/nightly:2025.01.01", "--policy", str(lenient))
    assert allowed.returncode == 0
    assert allowed.stdout.startswith(
        'allowed (approved-base-os)\nWarning: image-gate (policy "approved-base-os" allowed it: onUnresolved=Allow)'
    )
