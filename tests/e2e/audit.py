"""What the audit's e2e tests share: the policy WG's PolicyReport CRD (the chart's copy) and how to read reports.

The CRD is installed for the module that asks for it and removed afterwards, so the other modules'
image-gates see a cluster without it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from tests.e2e.imagegate import CHART_DIR, ImageGate, Kube, established_crd

__all__ = [
    "REPORT_CRD_FILE",
    "REPORT_CRD_NAME",
    "ReportWatch",
    "audit_passes",
    "openreports_crd",
    "policy_report",
    "report_crd_fixture",
    "results_of",
]

REPORT_CRD_FILE = CHART_DIR / "files" / "wgpolicyk8s.io_policyreports.yaml"
REPORT_CRD_NAME = "policyreports.wgpolicyk8s.io"
REPORT_NAME = "image-gate"

T = TypeVar("T")


@pytest.fixture(scope="module", name="report_crd")
def report_crd_fixture(kube: Kube) -> Iterator[None]:
    """The wgpolicyk8s.io PolicyReport CRD the chart installs, Established; deleted after the module."""
    kube.kubectl("apply", "--server-side", "-f", str(REPORT_CRD_FILE))
    with established_crd(kube, REPORT_CRD_NAME):
        yield


OPENREPORTS_CRD_NAME = "reports.openreports.io"


@contextlib.contextmanager
def openreports_crd(kube: Kube) -> Iterator[None]:
    """OpenReports' Report CRD, schema-less (the audit's choice depends only on discovery serving it); deleted
    afterwards."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": OPENREPORTS_CRD_NAME},
        "spec": {
            "group": "openreports.io",
            "scope": "Namespaced",
            "names": {"kind": "Report", "listKind": "ReportList", "plural": "reports", "singular": "report"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    kube.apply(crd)
    with established_crd(kube, OPENREPORTS_CRD_NAME):
        yield


def policy_report(kube: Kube, namespace: str) -> dict[str, Any] | None:
    """The namespace's image-gate PolicyReport, or None."""
    report: dict[str, Any] | None = kube.get_or_none("policyreports.wgpolicyk8s.io", REPORT_NAME, "-n", namespace)
    return report


def results_of(report: Mapping[str, Any] | None, policy: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(kind, name, container) -> the result of ``policy`` for it (one rule per test policy)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for result in (report or {}).get("results") or []:
        if result.get("policy") != policy:
            continue
        (resource,) = result["resources"]
        found[(resource["kind"], resource["name"], result["properties"]["container"])] = result
    return found


@dataclass
class ReportWatch:
    """Polls a namespace's report and remembers every distinct state seen, with its time since ``started``."""

    kube: Kube
    namespace: str
    started: float = field(default_factory=time.monotonic)
    seen: list[tuple[float, dict[str, Any] | None]] = field(default_factory=list)

    def until(self, probe: Callable[[dict[str, Any] | None], T | None], *, what: str, timeout: float = 60.0) -> T:
        """Poll until ``probe(report)`` is not None; return it. Fails with the last report seen."""
        deadline = time.monotonic() + timeout
        report: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            report = policy_report(self.kube, self.namespace)
            if not self.seen or _version(self.seen[-1][1]) != _version(report):
                self.seen.append((time.monotonic() - self.started, report))
            answer = probe(report)
            if answer is not None:
                return answer
            time.sleep(0.3)
        pytest.fail(f"not within {timeout:g}s: {what}; the last report: {report}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _version(report: Mapping[str, Any] | None) -> str | None:
    return None if report is None else str(report["metadata"].get("resourceVersion"))


def audit_passes(gate: ImageGate) -> list[str]:
    """The messages of the audit passes ``gate`` logged (one line per pass, JSON logs), oldest first."""
    passes: list[str] = []
    for line in gate.process.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("message") if isinstance(entry, dict) else None
        if isinstance(message, str) and message.startswith("audit pass ("):
            passes.append(message)
    return passes
