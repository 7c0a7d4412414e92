"""The optional policy field spec.severity: compiled, refused when not one of the reports' values, in the CRD."""

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from image_gate.core.policy import PolicyError, Severity, compile_policy

CRD = Path(__file__).resolve().parents[2] / "charts" / "image-gate" / "crds" / "imagegate.io_imagegatepolicies.yaml"
RULES = {"digest": {"requirePinned": True}}
REPORT_SEVERITIES = ["critical", "high", "medium", "low", "info"]
"""``results[].severity`` of wgpolicyk8s.io/v1alpha2 PolicyReport and openreports.io/v1alpha1 Report."""


@pytest.mark.parametrize("severity", REPORT_SEVERITIES)
def test_severity_compiles(severity: str) -> None:
    assert compile_policy("p", {**RULES, "severity": severity}).severity == severity


def test_severity_is_optional() -> None:
    assert compile_policy("p", RULES).severity is None


@pytest.mark.parametrize("severity", ["High", "urgent", "", 3])
def test_any_other_severity_is_refused_naming_the_field(severity: Any) -> None:
    with pytest.raises(PolicyError) as raised:
        compile_policy("p", {**RULES, "severity": severity})
    assert raised.value.problems == [
        f"spec.severity: must be one of critical, high, medium, low, info, not {severity!r}"
    ]


def test_the_crd_the_type_and_the_reports_agree_on_the_severities() -> None:
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["severity"]["enum"] == REPORT_SEVERITIES
    assert list(typing.get_args(Severity)) == REPORT_SEVERITIES
