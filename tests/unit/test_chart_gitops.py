"""The Helm-generated CA changes with every render; the chart and README say so and point GitOps elsewhere."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.chart.helm import CHART_DIR, HELM_HOW_TO, REPO_ROOT, Doc, render, require_tool


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm", HELM_HOW_TO)


def ca_bundle(docs: list[Doc]) -> str:
    [configuration] = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    return str(configuration["webhooks"][0]["clientConfig"].get("caBundle", ""))


def notes(helm: Path, *values: str) -> str:
    """NOTES.txt as ``helm install`` prints it (a client-side dry run needs no cluster)."""
    argv = [str(helm), "install", "image-gate", str(CHART_DIR), "--dry-run=client", *values]
    output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return output.split("\nNOTES:\n", 1)[1]


def test_the_helm_mode_renders_a_new_ca_every_time_and_cert_manager_does_not(helm: Path) -> None:
    """Why GitOps must not use the default mode: two renders, two CAs (a sync would swap them)."""
    assert ca_bundle(render(helm)) != ca_bundle(render(helm))
    cert_manager = {"certificates": {"mode": "certManager"}}
    assert render(helm, cert_manager) == render(helm, cert_manager)


def test_notes_warn_gitops_users_of_the_helm_mode_only(helm: Path) -> None:
    warning = "With GitOps"
    assert warning in notes(helm)
    assert "GitOps use certificates.mode=certManager, or secret" in notes(helm)
    assert warning not in notes(helm, "--set", "certificates.mode=certManager")


def test_values_and_readmes_point_gitops_to_cert_manager_or_an_existing_secret() -> None:
    values = (CHART_DIR / "values.yaml").read_text()
    assert "Not for GitOps" in values
    chart_readme = (CHART_DIR / "README.md").read_text()
    assert "**Not for GitOps**" in chart_readme
    assert "With GitOps, use `certManager`" in chart_readme
    readme = (REPO_ROOT / "README.md").read_text()
    installing = re.search(r"^## Installing in a cluster\n(.*?)^## ", readme, re.S | re.M)
    assert installing is not None
    assert "**GitOps" in installing.group(1)
    assert "`certificates.mode=certManager`" in installing.group(1)
    assert "`certificates.mode=secret`" in installing.group(1)
