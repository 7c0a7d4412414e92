"""Policy reports and status.audit: their shape (the policy WG's field names), cap, summary and determinism."""

import itertools
import json
import random
from dataclasses import replace
from typing import Any

import pytest

from image_gate.core.audit import AuditResult, ResultKind
from image_gate.core.reports import (
    DROPPED_ANNOTATION,
    REPORT_BYTES_CAP,
    REPORT_RESULT_CAP,
    FirstSeen,
    policy_audit_status,
    policy_reports,
)

MANAGED = {"app.kubernetes.io/managed-by": "image-gate"}
IMAGE = "swr.cn-north-4.myhuaweicloud.com/shop/app:1"


def result(
    outcome: ResultKind = "fail",
    *,
    namespace: str = "shop",
    kind: str = "Pod",
    name: str = "web",
    container: str = "app",
    policy: str = "base-os",
    rule: str = "baseImage.deniedOS",
    severity: str | None = None,
    found: str = "CentOS Linux 7",
    expected: str = "not CentOS",
) -> AuditResult:
    message = f'container "{container}" (image {IMAGE}): policy "{policy}" rule {rule}: {outcome}'
    return AuditResult(
        namespace,
        kind,
        name,
        f"uid-{name}",
        container,
        IMAGE,
        policy,
        rule,
        outcome,
        message,
        found,
        expected,
        severity,
    )


# Every field the schemas define for a result (wgpolicyk8s.io/v1alpha2 PolicyReportResult,
# openreports.io/v1alpha1 ReportResult: the same JSON names); a structural schema prunes any other.
RESULT_FIELDS = {
    "source",
    "policy",
    "rule",
    "category",
    "severity",
    "timestamp",
    "result",
    "scored",
    "resources",
    "resourceSelector",
    "message",
    "properties",
}
OBJECT_REFERENCE_FIELDS = {"apiVersion", "kind", "name", "namespace", "uid", "resourceVersion", "fieldPath"}
SEVERITIES = {"critical", "high", "medium", "low", "info"}


def test_a_policy_report_per_namespace_in_the_policy_wg_shape() -> None:
    results = [
        result("fail", kind="Deployment", name="api", severity="high"),
        result("warn", policy="pinned", rule="digest.requirePinned", found="tag 1", expected="a reference by digest"),
        result("pass", namespace="other", found="", expected=""),
    ]
    reports = policy_reports(results, flavour="wgpolicy")
    assert list(reports) == ["other", "shop"]
    shop = reports["shop"]
    assert {k: v for k, v in shop.items() if k != "results"} == {
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": "image-gate",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/managed-by": "image-gate"},
        },
        "summary": {"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0},
    }
    assert shop["results"] == [
        {
            "source": "image-gate",
            "policy": "base-os",
            "rule": "baseImage.deniedOS",
            "result": "fail",
            "scored": True,
            "severity": "high",
            "message": results[0].message,
            "properties": {"container": "app", "image": IMAGE, "found": "CentOS Linux 7", "expected": "not CentOS"},
            "resources": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "namespace": "shop", "uid": "uid-api"}
            ],
        },
        {
            "source": "image-gate",
            "policy": "pinned",
            "rule": "digest.requirePinned",
            "result": "warn",
            "scored": False,
            "message": results[1].message,
            "properties": {"container": "app", "image": IMAGE, "found": "tag 1", "expected": "a reference by digest"},
            "resources": [{"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "shop", "uid": "uid-web"}],
        },
    ]  # fmt: skip
    assert reports["other"]["results"][0]["properties"] == {"container": "app", "image": IMAGE}  # nothing empty
    for entry in shop["results"] + reports["other"]["results"]:
        assert set(entry) <= RESULT_FIELDS
        assert all(set(reference) <= OBJECT_REFERENCE_FIELDS for reference in entry["resources"])
        assert all(isinstance(value, str) for value in entry["properties"].values())
        assert entry.get("severity", "info") in SEVERITIES


def test_openreports_flavour_names_its_source_and_cap_too() -> None:
    [report] = policy_reports([result()], flavour="openreports").values()
    assert (report["apiVersion"], report["kind"], report["source"]) == (
        "openreports.io/v1alpha1",
        "Report",
        "image-gate",
    )
    assert report["configuration"] == {"limits": {"maxResults": REPORT_RESULT_CAP}}
    assert report["results"] == policy_reports([result()])["shop"]["results"]


def test_the_cap_keeps_the_most_important_results_and_the_summary_counts_every_one() -> None:
    passes = [result("pass", name=f"ok-{n:04d}") for n in range(REPORT_RESULT_CAP)]
    fails = [result("fail", name=f"bad-{n:03d}") for n in range(300)]
    errors = [result("error", name=f"unknown-{n:03d}") for n in range(200)]
    report = policy_reports(passes + errors + fails)["shop"]
    listed = report["results"]
    assert len(listed) == REPORT_RESULT_CAP
    assert report["summary"] == {"pass": 1000, "fail": 300, "warn": 0, "error": 200, "skip": 0}
    assert report["metadata"]["annotations"] == {DROPPED_ANNOTATION: "500"}
    assert [entry["result"] for entry in listed] == ["fail"] * 300 + ["error"] * 200 + ["pass"] * 500
    assert [entry["resources"][0]["name"] for entry in listed[-2:]] == ["ok-0498", "ok-0499"]


def test_long_results_are_capped_by_size_below_what_etcd_takes() -> None:
    long_image = "registry.example.com/" + "/".join(["a" * 60] * 4) + ":" + "t" * 120 + "@sha256:" + "f" * 64
    results = [
        replace(result("fail", name=f"w{n:04d}" + "n" * 200), image=long_image, message="m" * 1200, found="f" * 80)
        for n in range(REPORT_RESULT_CAP)
    ]
    report = policy_reports(results)["shop"]
    size = len(json.dumps(report))
    assert REPORT_BYTES_CAP * 0.8 < size <= REPORT_BYTES_CAP
    kept = len(report["results"])
    assert report["metadata"]["annotations"] == {DROPPED_ANNOTATION: str(REPORT_RESULT_CAP - kept)}
    assert report["summary"]["fail"] == REPORT_RESULT_CAP


def test_no_annotation_when_nothing_is_dropped() -> None:
    report = policy_reports([result("pass", name=f"ok-{n}") for n in range(REPORT_RESULT_CAP)])["shop"]
    assert "annotations" not in report["metadata"]
    assert len(report["results"]) == REPORT_RESULT_CAP


def test_reports_do_not_depend_on_the_order_of_the_results() -> None:
    kinds: list[ResultKind] = ["pass", "fail", "warn", "error", "skip"]
    results = [
        result(outcome, namespace=namespace, kind=kind, name=name, container=container, policy=policy, rule=rule)
        for outcome, namespace, kind, name, container, policy, rule in itertools.product(
            kinds, ["a", "b"], ["Pod", "Job"], ["x", "y"], ["c", "d"], ["p", "q"], ["r", "s"]
        )
    ]  # every pair of results differs in one field only: any field the order ignored would show
    results += [replace(results[0], uid="another"), replace(results[0], image="other:1")]
    results += [replace(results[0], message="other words")]
    first = json.dumps(policy_reports(results))
    for seed in range(3):
        random.Random(seed).shuffle(results)
        assert json.dumps(policy_reports(results)) == first


def test_timestamps_are_those_of_the_pass_that_first_produced_each_result() -> None:
    seen = FirstSeen()
    old = result("fail", name="a")
    fixed_later = result("fail", name="b")
    seen.update([old, fixed_later], at=1000.25)
    fixed = replace(fixed_later, result="pass", message="passed", found="", expected="")
    seen.update([old, fixed], at=2000.0)
    report = policy_reports([old, fixed], timestamps=seen)["shop"]
    stamps = {entry["resources"][0]["name"]: entry["timestamp"] for entry in report["results"]}
    assert stamps == {"a": {"seconds": 1000, "nanos": 0}, "b": {"seconds": 2000, "nanos": 0}}  # whole seconds
    seen.update([old], at=3000.0)
    assert seen(fixed) is None  # gone from the last pass: forgotten
    seen.update([old, fixed], at=4000.0)
    assert (seen(old), seen(fixed)) == (1000.25, 4000.0)


@pytest.mark.parametrize("flavour", ["wgpolicy", "openreports"])
def test_a_new_leader_takes_the_timestamps_over_from_the_stored_reports(flavour: Any) -> None:
    results = [
        result("fail", name="a", severity="high"),
        result("pass", name="b", kind="Deployment", found="", expected=""),
        replace(result("skip", name="c"), uid=""),
    ]
    before = FirstSeen()
    before.update(results, at=1000.7)
    stored = json.loads(json.dumps(policy_reports(results, flavour=flavour, timestamps=before)))

    after = FirstSeen()
    assert after.adopt(stored["shop"]) == 3
    after.update([*results, result("warn", name="new")], at=5000.0)
    assert policy_reports(results, flavour=flavour, timestamps=after) == stored  # nothing to write
    assert after(result("warn", name="new")) == 5000.0


@pytest.mark.parametrize(
    "garbage",
    [
        {},
        {"results": "x"},
        {"results": [3, {"source": "kyverno"}]},
        {"results": [{"source": "image-gate", "result": "fail", "properties": {}, "resources": []}]},
        {"results": [{"source": "image-gate", "result": "bad", "properties": {}, "resources": [{}], "timestamp": {}}]},
    ],
)
def test_adopt_passes_over_what_it_cannot_read(garbage: Any) -> None:
    seen = FirstSeen()
    assert seen.adopt(garbage) == 0


def test_adopt_keeps_the_times_it_has() -> None:
    seen = FirstSeen()
    seen.update([result()], at=10.0)
    stored = policy_reports([result()], timestamps=lambda r: 99.0)["shop"]
    assert seen.adopt(stored) == 0
    assert seen(result()) == 10.0


def test_without_timestamps_a_report_has_none() -> None:
    report = policy_reports([result()])["shop"]
    assert "timestamp" not in report["results"][0]


# ------------------------------------------------------------------ status.audit


def test_status_counts_every_violation_of_the_policy_and_lists_the_first_twenty() -> None:
    results = [result("fail", namespace=f"ns{n % 3}", name=f"w{n:02d}") for n in range(30)]
    results += [result("warn", namespace="ns0", name="zz", container="side")]
    results += [result(kind, name="x") for kind in ("pass", "error", "skip")]
    results += [result("fail", policy="another", name="y")]
    status = policy_audit_status(results, "base-os", at=1_764_668_700.9)
    assert status["lastPass"] == "2025-12-02T09:45:00Z"
    assert status["totalViolations"] == 31
    violations = status["violations"]
    assert len(violations) == 20
    assert violations[0] == {
        "namespace": "ns0",
        "kind": "Pod",
        "name": "w00",
        "container": "app",
        "image": IMAGE,
        "message": results[0].message,
    }
    ordered = sorted((r.namespace, r.name) for r in results[:31])[:20]
    assert [(v["namespace"], v["name"]) for v in violations] == ordered


def test_status_of_a_policy_without_violations() -> None:
    status = policy_audit_status([result("pass")], "base-os", at=0)
    assert status == {"lastPass": "1970-01-01T00:00:00Z", "totalViolations": 0, "violations": []}


@pytest.mark.parametrize("flavour", ["wgpolicy", "openreports"])
def test_a_report_is_plain_json(flavour: Any) -> None:
    report = policy_reports([result(severity="low")], flavour=flavour)["shop"]
    assert json.loads(json.dumps(report)) == report
