"""
Audit results as documents: policy reports per namespace, and a policy's ``status.audit``.

Pure: results in, plain dicts out; the caller writes them to the API server.
Two report flavours, with the same results (field names from the schemas:
kubernetes-sigs/wg-policy-prototypes ``policy-report/pkg/api/wgpolicyk8s.io/v1alpha2``
and openreports/reports-api ``apis/openreports.io/v1alpha1``):

* ``wgpolicy``: ``wgpolicyk8s.io/v1alpha2`` ``PolicyReport``, what Policy Reporter
  and Kyverno read today;
* ``openreports``: ``openreports.io/v1alpha1`` ``Report``, its successor, which
  also names its ``source`` at the top and its result cap in ``configuration``.

Each namespace gets one report named ``image-gate``. Everything in it is a
function of the results, so the writer can compare a new report with the stored
one and write only when they differ:

* results are sorted: the most important first (``fail``, ``warn``, ``error``,
  ``skip``, ``pass``), then by kind, name, container, policy and rule;
* at most `REPORT_RESULT_CAP` results, and at most `REPORT_BYTES_CAP` of them
  (long image names and digests make a result up to ~2.5 KiB, and etcd refuses
  objects past 1.5 MiB): past either, the least important ones are dropped.
  ``summary`` still counts every result, dropped ones included (the
  summary is what dashboards show), and the annotation `DROPPED_ANNOTATION`
  says how many are not listed (absent when none are: the schemas' summary has
  no field for it, and a structural schema would prune one);
* a result's ``timestamp`` is only there when the caller gives one: the time of
  the pass that *first* produced that exact result (`FirstSeen` remembers them,
  and takes them over from the stored reports after a change of leader), so a
  pass that changes nothing writes nothing, and a result that changes (a fix, a
  new fact) gets the time it changed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from image_gate.core.audit import AuditResult, ResultKind
from image_gate.core.workloads import JUDGED_RESOURCES

__all__ = [
    "DROPPED_ANNOTATION",
    "MANAGED_BY",
    "REPORT_BYTES_CAP",
    "REPORT_NAME",
    "REPORT_RESULT_CAP",
    "SOURCE",
    "STATUS_VIOLATIONS_SHOWN",
    "FirstSeen",
    "Flavour",
    "policy_audit_status",
    "policy_reports",
    "rfc3339",
]

Flavour = Literal["wgpolicy", "openreports"]

REPORT_RESULT_CAP: Final = 1000
"""Results listed per report (the issue's cap; ~0.7 KiB each with the example policies' images)."""
REPORT_BYTES_CAP: Final = 1024 * 1024
"""The results' estimated JSON size listed per report: a third below etcd's limit on an object (1.5 MiB),
for the rest of the object and the estimate's error (`_estimated_size`)."""
_RESULT_OVERHEAD: Final = 400
"""A result's JSON past its variable strings: keys, quotes, source, scored, the reference's apiVersion."""
STATUS_VIOLATIONS_SHOWN: Final = 20
"""Violations listed in a policy's ``status.audit``; ``totalViolations`` counts them all."""
REPORT_NAME: Final = "image-gate"
SOURCE: Final = "image-gate"
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "image-gate"}
DROPPED_ANNOTATION: Final = "imagegate.io/dropped-results"
"""How many results a report does not list for the cap (absent when none)."""

_API_VERSIONS: Final = {
    "wgpolicy": ("wgpolicyk8s.io/v1alpha2", "PolicyReport"),
    "openreports": ("openreports.io/v1alpha1", "Report"),
}
_RANK: Final[dict[ResultKind, int]] = {"fail": 0, "warn": 1, "error": 2, "skip": 3, "pass": 4}
"""Which results a report keeps first under the cap, and lists first."""
_KINDS: Final[tuple[ResultKind, ...]] = ("pass", "fail", "warn", "error", "skip")
_OBJECT_API_VERSIONS: Final = {r.kind: f"{r.group}/{r.version}" if r.group else r.version for r in JUDGED_RESOURCES}

Timestamps = Callable[[AuditResult], float | None]
"""When a result was first produced (seconds since the epoch), or None to leave its timestamp out."""


class FirstSeen:
    """The time of the pass that first produced each result, for report timestamps.

    Keyed by the whole result (object, container, policy, rule, outcome and
    words): a result that stays the same keeps its time from pass to pass; one
    that changes is new, with the time of the pass that changed it. Only the
    last pass's results are remembered. Pure state: the caller says when.

    A new leader starts with the reports the last one wrote (`adopt`), so its
    first pass does not rewrite every report only to give the results new times.
    """

    def __init__(self) -> None:
        self._since: dict[AuditResult, float] = {}

    def update(self, results: Iterable[AuditResult], *, at: float) -> None:
        """Remember the results of the pass that ran at ``at``; forget the ones it no longer produced."""
        since = self._since
        self._since = {result: since.get(result, at) for result in results}

    def adopt(self, report: Mapping[str, Any]) -> int:
        """Remember the timestamps of a stored report's results, where this has none; how many it took.

        ``report`` is one this module built, read back from the API server; what
        is not readable as such is passed over (the next pass stamps it anew).
        """
        adopted = 0
        for entry in _entries(report):
            stored = _stored_result(entry)
            if stored is not None and stored[0] not in self._since:
                self._since[stored[0]] = stored[1]
                adopted += 1
        return adopted

    def __call__(self, result: AuditResult) -> float | None:
        return self._since.get(result)


def _entries(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    results = report.get("results") if isinstance(report, Mapping) else None
    return [entry for entry in results if isinstance(entry, Mapping)] if isinstance(results, list) else []


def _stored_result(entry: Mapping[str, Any]) -> tuple[AuditResult, float] | None:
    """The result a report entry of ours was built from, and its timestamp; None when it is not one of ours."""
    properties, resources, stamp = entry.get("properties"), entry.get("resources"), entry.get("timestamp")
    if not (
        entry.get("source") == SOURCE
        and isinstance(properties, Mapping)
        and isinstance(resources, list)
        and len(resources) == 1
        and isinstance(resources[0], Mapping)
        and isinstance(stamp, Mapping)
        and isinstance(stamp.get("seconds"), int)
        and entry.get("result") in _RANK
    ):
        return None
    reference = resources[0]
    texts = [
        reference.get("namespace"),
        reference.get("kind"),
        reference.get("name"),
        reference.get("uid", ""),
        properties.get("container"),
        properties.get("image"),
        entry.get("policy"),
        entry.get("rule"),
        entry.get("message"),
        properties.get("found", ""),
        properties.get("expected", ""),
    ]
    severity = entry.get("severity")
    if not all(isinstance(text, str) for text in texts) or not (severity is None or isinstance(severity, str)):
        return None
    namespace, kind, name, uid, container, image, policy, rule, message, found, expected = texts
    outcome: ResultKind = entry["result"]
    result = AuditResult(
        namespace, kind, name, uid, container, image, policy, rule, outcome, message, found, expected, severity
    )
    return result, float(stamp["seconds"])


def policy_reports(
    results: Iterable[AuditResult],
    *,
    flavour: Flavour = "wgpolicy",
    timestamps: Timestamps | None = None,
) -> dict[str, dict[str, Any]]:
    """One report per namespace that has results: namespace -> the whole object, ready to create or compare.

    Namespaces without results get no report here; the writer deletes the reports
    it wrote before for them. Nested values may be shared between results (the
    ``resources`` of one object): treat the documents as read-only.
    """
    by_namespace: dict[str, list[AuditResult]] = {}
    for result in results:
        by_namespace.setdefault(result.namespace, []).append(result)
    return {
        namespace: _report(namespace, listed, flavour, timestamps) for namespace, listed in sorted(by_namespace.items())
    }


def _order(result: AuditResult) -> tuple[int, str, str, str, str, str, str, str, str]:
    """Most important first, then by object, container, policy and rule; the rest only breaks ties."""
    return (
        _RANK[result.result],
        result.kind,
        result.name,
        result.container,
        result.policy,
        result.rule,
        result.uid,
        result.image,
        result.message,
    )


def _report(
    namespace: str, results: list[AuditResult], flavour: Flavour, timestamps: Timestamps | None
) -> dict[str, Any]:
    summary = dict.fromkeys(_KINDS, 0)
    for result in results:
        summary[result.result] += 1
    kept = _within_bytes(heapq.nsmallest(REPORT_RESULT_CAP, results, key=_order))
    dropped = len(results) - len(kept)
    resources: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    api_version, kind = _API_VERSIONS[flavour]
    metadata: dict[str, Any] = {"name": REPORT_NAME, "namespace": namespace, "labels": dict(MANAGED_BY)}
    if dropped:
        metadata["annotations"] = {DROPPED_ANNOTATION: str(dropped)}
    report: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if flavour == "openreports":
        report["source"] = SOURCE
        report["configuration"] = {"limits": {"maxResults": REPORT_RESULT_CAP}}
    report["summary"] = summary
    report["results"] = [_result(result, resources, timestamps) for result in kept]
    return report


def _within_bytes(results: list[AuditResult]) -> list[AuditResult]:
    """The first of ``results`` whose estimated JSON fits in `REPORT_BYTES_CAP`."""
    total = 0
    for index, result in enumerate(results):
        total += _estimated_size(result)
        if total > REPORT_BYTES_CAP:
            return results[:index]
    return results


def _estimated_size(result: AuditResult) -> int:
    """About the JSON size of a result's entry, from above for ASCII text (escapes aside)."""
    return _RESULT_OVERHEAD + sum(
        map(
            len,
            (
                result.namespace,
                result.kind,
                result.name,
                result.uid,
                result.container,
                result.image,
                result.policy,
                result.rule,
                result.message,
                result.found,
                result.expected,
                result.severity or "",
            ),
        )
    )


def _result(
    result: AuditResult,
    resources: dict[tuple[str, str, str], list[dict[str, str]]],
    timestamps: Timestamps | None,
) -> dict[str, Any]:
    properties = {"container": result.container, "image": result.image}
    if result.found:
        properties["found"] = result.found
    if result.expected:
        properties["expected"] = result.expected
    entry: dict[str, Any] = {
        "source": SOURCE,
        "policy": result.policy,
        "rule": result.rule,
        "result": result.result,
        "scored": result.result != "warn",  # the schemas: warn counts "non-scored" results that failed
        "message": result.message,
        "properties": properties,
        "resources": _resources(result, resources),
    }
    if result.severity is not None:
        entry["severity"] = result.severity
    if timestamps is not None:
        at = timestamps(result)
        if at is not None:
            entry["timestamp"] = _timestamp(at)
    return entry


def _resources(result: AuditResult, known: dict[tuple[str, str, str], list[dict[str, str]]]) -> list[dict[str, str]]:
    """The ObjectReference of the result's object; one list per object, shared by its results."""
    key = (result.kind, result.name, result.uid)
    listed = known.get(key)
    if listed is None:
        reference = {
            "apiVersion": _OBJECT_API_VERSIONS.get(result.kind, ""),
            "kind": result.kind,
            "name": result.name,
            "namespace": result.namespace,
        }
        if result.uid:
            reference["uid"] = result.uid
        listed = known[key] = [reference]
    return listed


def _timestamp(at: float) -> dict[str, int]:
    """A ``metav1.Timestamp`` in whole seconds, as Kubernetes writes times: read back (`FirstSeen.adopt`),
    it is the same timestamp again, where nanoseconds would not survive a float."""
    return {"seconds": math.floor(at), "nanos": 0}


def policy_audit_status(results: Iterable[AuditResult], policy: str, *, at: float) -> dict[str, Any]:
    """A policy's ``status.audit`` after the pass that ran at ``at`` (seconds since the epoch).

    A violation is a ``fail`` or ``warn`` result of the policy: one per container and
    rule broken. The first `STATUS_VIOLATIONS_SHOWN` are listed, in the order of
    namespace, kind, name, container and rule.
    """
    violations = [r for r in results if r.policy == policy and r.result in ("fail", "warn")]
    shown = heapq.nsmallest(
        STATUS_VIOLATIONS_SHOWN, violations, key=lambda r: (r.namespace, r.kind, r.name, r.container, r.rule)
    )
    return {
        "lastPass": rfc3339(at),
        "totalViolations": len(violations),
        "violations": [
            {
                "namespace": r.namespace,
                "kind": r.kind,
                "name": r.name,
                "container": r.container,
                "image": r.image,
                "message": r.message,
            }
            for r in shown
        ],
    }


def rfc3339(at: float) -> str:
    """``2026-12-02T09:45:00Z``: whole seconds, as Kubernetes writes times."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
