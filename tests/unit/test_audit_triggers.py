"""When the leader's audit runs a pass besides its timer, and when a report is worth writing again."""

from __future__ import annotations

from typing import Any

from image_gate.core.outcomes import BaseImage, Found, NotFound
from image_gate.facts.records import FactRecord, StoredFact
from image_gate.kube.audit_reports import content_of
from image_gate.kube.audit_triggers import PassTriggers

REFERENCE = "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
UBUNTU = BaseImage("Ubuntu", "22.04", "sha256:" + "a" * 64)


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def triggers(clock: FakeClock, woken: list[int] | None = None) -> PassTriggers:
    calls = woken if woken is not None else []
    return PassTriggers(debounce=5.0, clock=clock, on_due=lambda: calls.append(1))


def fact(outcome: Any = None, *, request_id: str | None = None, reference: str = REFERENCE) -> StoredFact:
    record = None
    if outcome is not None:
        if isinstance(outcome, Found):
            outcome = Found(outcome.value, request_id=request_id)
        record = FactRecord(outcome, observed_at=1000.0, expires_at=None)
    return StoredFact(name="hss-api", cloud="huawei", reference=reference, record=record)


def test_a_change_makes_a_pass_due_after_the_debounce_and_a_burst_makes_one() -> None:
    clock = FakeClock()
    woken: list[int] = []
    due = triggers(clock, woken)
    due.policy(None, "p", 1)
    assert due.take() is None, "not before the debounce"
    clock.advance(3)
    due.policy(None, "q", 1)  # joins the pass due at 5 s
    clock.advance(2)
    assert due.take() == "policy p generation 1"
    assert due.take() is None
    assert len(woken) == 1


def test_only_a_new_generation_or_a_deletion_of_a_policy_counts() -> None:
    clock = FakeClock()
    due = triggers(clock)
    due.policy(None, "p", 1)
    due.clear()
    due.policy("MODIFIED", "p", 1)  # a status write: same generation
    assert due.due is None
    due.policy("MODIFIED", "p", 2)
    assert due.reason == "policy p generation 2"
    due.clear()
    due.policy("DELETED", "p", 2)
    assert due.reason == "policy p deleted"


def test_a_fact_counts_when_its_outcome_changed_and_the_last_pass_judged_its_image() -> None:
    clock = FakeClock()
    due = triggers(clock)
    due.fact(fact())  # asked for, not answered: nothing to judge again yet
    due.fact(fact(Found(UBUNTU)))
    assert due.due is None, "no pass judged this image yet"

    due.judged(frozenset({REFERENCE}))
    due.fact(fact(Found(UBUNTU), request_id="refresh-2"))  # a refresh that found the same
    assert due.due is None
    due.fact(fact(NotFound(detail="HSS has not scanned it")))
    assert due.reason == "fact hss-api changed"


def test_a_fact_answered_after_a_pass_missed_it_counts() -> None:
    clock = FakeClock()
    due = triggers(clock)
    due.judged(frozenset({REFERENCE}))
    due.fact(fact())
    assert due.due is None
    due.fact(fact(Found(UBUNTU)))
    assert due.due is not None


def test_facts_of_images_no_pass_judged_do_not_count() -> None:
    due = triggers(FakeClock())
    due.judged(frozenset({REFERENCE}))
    other = "swr.cn-north-4.myhuaweicloud.com/demo/worker:3.1.0"
    due.fact(fact(reference=other))
    due.fact(fact(Found(UBUNTU), reference=other))
    assert due.due is None


def report(**changes: Any) -> dict[str, Any]:
    result = {"policy": "p", "rule": "r", "result": "fail", "timestamp": {"seconds": 1, "nanos": 0}}
    base: dict[str, Any] = {
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {"name": "image-gate", "namespace": "ns", "labels": {"app.kubernetes.io/managed-by": "image-gate"}},
        "summary": {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0},
        "results": [result],
    }
    base.update(changes)
    return base


def test_a_report_is_the_same_whatever_its_metadata_and_result_timestamps_say() -> None:
    stored = report()
    stored["metadata"] = {**stored["metadata"], "resourceVersion": "42", "uid": "u", "creationTimestamp": "t"}
    stored["results"] = [{**stored["results"][0], "timestamp": {"seconds": 99, "nanos": 5}}]
    assert content_of(stored) == content_of(report())


def test_a_report_differs_when_its_results_summary_labels_or_annotations_do() -> None:
    assert content_of(report(results=[])) != content_of(report())
    assert content_of(report(summary={"pass": 1})) != content_of(report())
    dropped = report()
    dropped["metadata"] = {**dropped["metadata"], "annotations": {"imagegate.io/dropped-results": "3"}}
    assert content_of(dropped) != content_of(report())
