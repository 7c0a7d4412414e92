"""image_gate_pending_lookups keeps a series only for namespaces with lookups waiting."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from image_gate.app.metrics import Metrics


def pending(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.labels["namespace"]: sample.value
        for family in registry.collect()
        if family.name == "image_gate_pending_lookups"
        for sample in family.samples
    }


def test_a_drained_namespace_has_no_series() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.pending_by_namespace({"flood": 40, "team": 1})
    assert pending(registry) == {"flood": 40.0, "team": 1.0}
    metrics.pending_by_namespace({"flood": 39})
    assert pending(registry) == {"flood": 39.0}
    metrics.pending_by_namespace({})
    assert pending(registry) == {}
    metrics.pending_by_namespace({"team": 2})
    assert pending(registry) == {"team": 2.0}, "a namespace that asks again is counted again"


def test_a_thousand_namespaces_that_came_and_went_leave_nothing() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for n in range(1_000):
        metrics.pending_by_namespace({f"ns-{n}": 1})
    metrics.pending_by_namespace({})
    assert pending(registry) == {}
