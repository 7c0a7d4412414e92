"""``helm upgrade`` from the chart before ImageFacts to the current one, and the documented CRD step.

A release installed before the shared fact store has no ImageFact CRD, and ``helm upgrade`` never
adds what is in ``crds/``. The chart README says what to run instead; this module installs the
previous chart (as of `PREVIOUS_CHART_COMMIT`, extracted with ``git archive``), upgrades it to the
current chart, runs the README's command word for word, and checks that the upgraded release's
ServiceAccount may then do what the leader does (create an ImageFact, patch its status, hold the
Lease in the release namespace) and that the installed CRD keeps a status with ``hssImageId``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.factstore import FACT_CRD_NAME
from tests.e2e.imagegate import CHART_DIR, REPO_ROOT, Kube, helm_release

pytestmark = pytest.mark.e2e

PREVIOUS_CHART_COMMIT = "27c69e5"
"""The last chart without the ImageFact CRD, its RBAC and the Lease."""
DOCUMENTED_STEP = re.compile(r"`(kubectl apply --server-side -f crds/imagegate\.io_imagefacts\.yaml)`")


@pytest.fixture(scope="module")
def previous_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart as of `PREVIOUS_CHART_COMMIT`, extracted from git."""
    archive = subprocess.run(
        ["git", "archive", PREVIOUS_CHART_COMMIT, "charts/image-gate"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_CHART_COMMIT} is not in this checkout: {archive.stderr.decode().strip()}")
    root = tmp_path_factory.mktemp("previous")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    chart = root / "charts" / "image-gate"
    assert not (chart / "crds" / "imagegate.io_imagefacts.yaml").exists(), "the previous chart predates ImageFacts"
    return chart


@pytest.fixture
def release(kube: Kube) -> Iterator[tuple[str, str]]:
    """A release name and its namespace (created by helm); uninstalled and deleted afterwards."""
    with helm_release(kube, "up", "upgrade") as names:
        yield names


@pytest.fixture
def without_fact_crd(kube: Kube) -> Iterator[None]:
    """No ImageFact CRD, as in a cluster that ran the previous release; removed again afterwards.

    Other modules' image-gates keep their facts in memory unless their module installs the CRD
    (tests/e2e/factstore.py), so this module leaves the cluster as it found it.
    """
    kube.kubectl("delete", "crd", FACT_CRD_NAME, "--ignore-not-found", "--timeout=60s")
    try:
        yield
    finally:
        kube.kubectl("delete", "crd", FACT_CRD_NAME, "--ignore-not-found", "--timeout=60s", check=False)


def can(kube: Kube, subject: str, verb: str, resource: str, *extra: str) -> bool:
    answer = kube.kubectl("auth", "can-i", verb, resource, f"--as={subject}", *extra, check=False)
    return answer.stdout.strip() == "yes"


def test_upgrade_from_the_chart_before_imagefacts_then_the_documented_crd_step(
    kube: Kube, crd: dict[str, Any], previous_chart: Path, release: tuple[str, str], without_fact_crd: None
) -> None:
    name, namespace = release
    fullname = f"{name}-image-gate"
    subject = f"system:serviceaccount:{namespace}:{fullname}"
    # Inert in this shared cluster: nothing carries this label, and failures are ignored.
    values = {
        "webhook": {"failurePolicy": "Ignore", "objectSelector": {"matchLabels": {"imagegate.io/e2e-never": name}}}
    }
    with tempfile.TemporaryDirectory() as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        common = ["--namespace", namespace, "--values", str(values_file)]
        # --skip-crds: the session's policy CRD is the current one (applied by kubectl); helm's server-side
        # apply of the previous, different one would conflict with it. No release upgrades CRDs anyway.
        installed = kube.helm("install", name, str(previous_chart), *common, "--create-namespace", "--skip-crds")
        assert "STATUS: deployed" in installed.stdout, installed.stdout
        assert not can(kube, subject, "get", "leases.coordination.k8s.io", "-n", namespace)

        upgraded = kube.helm("upgrade", name, str(CHART_DIR), *common)
    assert "has been upgraded" in upgraded.stdout, upgraded.stdout
    history = yaml.safe_load(kube.helm("history", name, "--namespace", namespace, "-o", "yaml").stdout)
    assert [(entry["revision"], entry["status"]) for entry in history] == [(1, "superseded"), (2, "deployed")]
    assert kube.get_or_none("crd", FACT_CRD_NAME) is None, "helm upgrade does not add CRDs: hence the step"

    # The step, exactly as the chart README words it, run from the chart's directory.
    readme = (CHART_DIR / "README.md").read_text()
    match = DOCUMENTED_STEP.search(readme)
    assert match is not None, "the chart README no longer documents the CRD step this test runs"
    *command, crd_file = match.group(1).split()
    applied = kube.kubectl(*command[1:], str(CHART_DIR / crd_file))
    assert f"customresourcedefinition.apiextensions.k8s.io/{FACT_CRD_NAME} serverside-applied" in applied.stdout
    kube.kubectl("wait", "--for=condition=Established", f"crd/{FACT_CRD_NAME}", "--timeout=60s")
    again = kube.kubectl(*command[1:], str(CHART_DIR / crd_file))
    assert again.returncode == 0, "running the step twice is harmless"

    # What the upgraded release's ServiceAccount may now do: the leader's work, in the release namespace only.
    for verb in ("get", "create", "update"):
        assert can(kube, subject, verb, "leases.coordination.k8s.io", "-n", namespace), verb
    assert not can(kube, subject, "update", "leases.coordination.k8s.io", "-n", "default")
    fact = f"hss-upgrade-{uuid.uuid4().hex}"
    manifest = {
        "apiVersion": "imagegate.io/v1alpha1",
        "kind": "ImageFact",
        "metadata": {"name": fact},
        "spec": {
            "cloud": "huawei",
            "reference": "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2",
            "location": {"region": "cn-north-4", "imageType": "private_image"},
        },
    }
    try:
        kube.kubectl("create", f"--as={subject}", "-f", "-", stdin=yaml.safe_dump(manifest))
        status = {
            "status": {
                "state": "Found",
                "observedAt": "2026-12-02T08:00:00Z",
                "expiresAt": "2026-12-02T08:05:00Z",
                "baseImage": {"osName": "Ubuntu", "osVersion": "22.04", "layerDigest": "sha256:" + "a" * 64},
                "hssImageId": "9c4b0a52-hss-image",
            }
        }
        # kubectl patch reads the status subresource first, which the chart (rightly) does not grant; image-gate
        # sends the merge patch alone. So: may the ServiceAccount patch it, and does the CRD keep what is written?
        assert can(kube, subject, "patch", "imagefacts.imagegate.io", "--subresource=status")
        kube.kubectl("patch", "imagefact", fact, "--subresource=status", "--type=merge", "-p", json.dumps(status))
        stored = kube.get("imagefact", fact)
        assert stored["status"]["hssImageId"] == "9c4b0a52-hss-image", "the CRD keeps hssImageId"
        listed = kube.kubectl("get", "igf", fact)
        assert "Ubuntu" in listed.stdout, listed.stdout
        assert "22.04" in listed.stdout, listed.stdout
    finally:
        kube.kubectl("delete", "imagefact", fact, "--ignore-not-found", check=False)
