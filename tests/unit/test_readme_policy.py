"""The README's policy reference: its example compiles, and the severities it lists are the ones accepted."""

from __future__ import annotations

import re
from typing import Any, get_args

import pytest
import yaml

from image_gate.core.policy import PolicyError, Severity, compile_policy
from tests.chart.helm import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def policies_section() -> str:
    found = re.search(r"^## Policies\n(.*?)^## ", README, re.S | re.M)
    assert found is not None
    return found.group(1)


def example() -> dict[str, Any]:
    [block] = re.findall(r"```yaml\n(.*?)```", policies_section(), re.S)
    document: dict[str, Any] = yaml.safe_load(block)
    return document


def test_the_example_compiles_with_its_severity() -> None:
    document = example()
    policy = compile_policy(document["metadata"]["name"], document["spec"])
    assert policy.severity == "high"


def test_the_severities_listed_are_the_ones_accepted() -> None:
    listed = re.search(r"`severity` \(optional: (.*?), the Kubernetes", " ".join(policies_section().split()))
    assert listed is not None
    assert re.findall(r"`([a-z]+)`", listed.group(1)) == list(get_args(Severity))


def test_any_other_severity_makes_the_policy_not_ready() -> None:
    spec = {**example()["spec"], "severity": "urgent"}
    with pytest.raises(PolicyError, match=r"spec\.severity"):
        compile_policy("approved-base-os", spec)
