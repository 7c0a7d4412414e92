"""
Prometheus metrics, on a registry of image-gate's own.

`Metrics` is the observer that the cloud clients (`CallObserver`), the fact
cache and the circuit breakers report to, and the webhook records admissions
in. Names follow the conventions of Gatekeeper and Kyverno so that dashboards
read the same: ``image_gate_admission_requests_total{decision, mode, dry_run}``
and so on. A registry per instance keeps tests independent.

What every warm review records (its counters, its duration, the cache hits of its
lookups) is added up in plain dicts and handed to prometheus_client when the page is
rendered (or every few thousand reviews): prometheus_client takes a lock for each
increment and walks every bucket for each observation, which was a tenth of what
image-gate itself spent on a warm review. Everything is read through `Metrics.render`.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from image_gate.core.evaluate import Decision
from image_gate.facts.breaker import BreakerState
from image_gate.kube.audit import PassSummary

__all__ = ["Metrics"]

_MOST_PENDING_DURATIONS = 4096
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        registry = self.registry

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(name, documentation, labels, registry=registry)

        def gauge(name: str, documentation: str, *labels: str) -> Gauge:
            return Gauge(name, documentation, labels, registry=registry)

        def histogram(name: str, documentation: str, *labels: str) -> Histogram:
            return Histogram(name, documentation, labels, buckets=_LATENCY_BUCKETS, registry=registry)

        self.admissions = counter(
            "image_gate_admission_requests",
            "Admission reviews answered, by decision (allowed, denied, warned), strictest mode and dry-run.",
            "kind",
            "decision",
            "mode",
            "dry_run",
        )
        self.review_seconds = histogram(
            "image_gate_admission_review_duration_seconds",
            "Time to answer one admission review, fact lookups included.",
            "kind",
        )
        self.shed = counter(
            "image_gate_admission_shed",
            "Admission reviews refused at once (HTTP 429) because image-gate was past its capacity: answered, "
            "they would have come after the API server's timeout.",
        )
        self.findings = counter(
            "image_gate_policy_findings",
            "Rules an image failed, by policy, mode and problem (violation or unresolved). Audit mode only counts.",
            "policy",
            "mode",
            "problem",
        )
        self.policies = gauge("image_gate_policies", "ImageGatePolicies known, by state (ready, invalid).", "state")
        self.cache = counter(
            "image_gate_cache_requests",
            "Fact cache answers, by cache and result (hit, negative_hit, miss, joined, stale, timed_out).",
            "cache",
            "result",
        )
        self.cache_evictions = counter(
            "image_gate_cache_evictions", "Entries dropped because a cache reached its bound.", "cache"
        )
        self.cache_refresh_ahead = counter(
            "image_gate_cache_refresh_ahead", "Background refreshes started before an entry expired.", "cache"
        )
        self.upstream_calls = counter(
            "image_gate_upstream_calls",
            "HTTP calls to the clouds, by cloud, API and outcome.",
            "cloud",
            "api",
            "outcome",
        )
        self.upstream_seconds = histogram(
            "image_gate_upstream_call_duration_seconds", "Duration of HTTP calls to the clouds.", "cloud", "api"
        )
        self.quota_wait_seconds = counter(
            "image_gate_quota_wait_seconds",
            "Seconds calls waited for the client-side quota, by cloud and API.",
            "cloud",
            "api",
        )
        self.breaker_open = gauge(
            "image_gate_circuit_breaker_open", "1 while a cloud's circuit breaker is open.", "cloud"
        )
        self.breaker_rejections = counter(
            "image_gate_circuit_breaker_rejections",
            "Calls failed fast because a cloud's circuit breaker was open.",
            "cloud",
            "api",
        )

        self.leader = gauge("image_gate_leader", "1 while this replica holds the Lease and resolves facts for all.")
        self.fact_store_writes = counter(
            "image_gate_fact_store_writes",
            "ImageFact status writes by the leader, by result (written, unchanged, conflict, failed).",
            "result",
        )
        self.fact_misses_waited = counter(
            "image_gate_fact_misses_waited",
            "Reviews that waited for the leader to resolve a fact, by outcome (Found, NotFound, a failure, "
            "timed out, degraded).",
            "outcome",
        )
        self.fact_miss_wait_seconds = histogram(
            "image_gate_fact_miss_wait_duration_seconds", "How long reviews waited for the leader's answer."
        )
        self.fact_store_degraded = counter(
            "image_gate_fact_store_degraded",
            "Times the ImageFact store could not be written and facts were resolved in-process.",
        )
        self.pending_lookups = gauge(
            "image_gate_pending_lookups",
            "Lookups waiting in the leader's fair queue, by the namespace that asked.",
            "namespace",
        )
        self._pending_namespaces: set[str] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._pending_counts: dict[tuple[Any, tuple[str, ...]], float] = {}
        """Increments not yet handed to prometheus_client, by (metric, labels): see the module docstring."""
        self._pending_seconds: dict[str, list[float]] = {}
        """Review durations not yet observed, by kind."""
        self._last_tally: tuple[Decision | None, collections.Counter[tuple[str, str, str]]] = (
            None,
            collections.Counter(),
        )
        """`_child`'s memory: only the label sets of bounded metrics (admissions, findings, caches) go in."""
        """The namespaces ``pending_lookups`` has a series for."""
        self.facts = gauge("image_gate_facts", "ImageFacts in the cluster, by state (Pending until resolved).", "state")

        self.fact_cap_reached = gauge(
            "image_gate_fact_cap_reached",
            "1 while the ImageFacts reach their cap: new facts are then resolved by each replica on its own.",
        )
        self.facts_deleted_total = counter(
            "image_gate_facts_deleted", "ImageFacts deleted by the leader because nobody used them."
        )
        self.facts_resolved = counter(
            "image_gate_facts_resolved",
            "Facts the leader resolved, by cloud and when: ahead of need (a refresh, a running workload's image, "
            "the HSS inventory) or at admission (a review asked for it).",
            "cloud",
            "when",
        )
        self.inventory_pages = counter(
            "image_gate_inventory_pages",
            "Pages of HSS's image inventory the leader read, by outcome (found; 'no free slot': left to admissions, "
            "not asked; or the failure).",
            "outcome",
        )
        self.inventory_answers = counter(
            "image_gate_inventory_answers",
            "HSS image lookups the inventory mirror answered without a list call, by answer (found, not synced).",
            "answer",
        )
        self.inventory_images_held = gauge(
            "image_gate_inventory_images", "Images the leader's mirror of HSS's inventory holds."
        )
        self.audit_passes = counter(
            "image_gate_audit_passes",
            "The leader's audit passes over what runs, by trigger (leading, timer, policy, fact).",
            "trigger",
        )
        self.audit_results = gauge(
            "image_gate_audit_results",
            "Results of the last audit pass, by result (pass, fail, warn, error, skip).",
            "result",
        )
        self.audit_pass_seconds = gauge(
            "image_gate_audit_pass_seconds", "Duration of the last audit pass, by clock (wall, cpu).", "clock"
        )
        self.audit_writes = counter(
            "image_gate_audit_writes",
            "Policy reports and policy status.audit the audit wrote, by object (report, status) and outcome "
            "(written, deleted, unchanged: not written as nothing changed, failed).",
            "object",
            "outcome",
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: prometheus_client takes a lock and checks the labels on
        every call, a few microseconds that each warm review paid five times or more."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _count(self, metric: Any, labels: tuple[str, ...], amount: float = 1) -> None:
        key = (metric, labels)
        self._pending_counts[key] = self._pending_counts.get(key, 0) + amount

    def _flush(self) -> None:
        """Hand what the hot paths added up to prometheus_client."""
        pending, self._pending_counts = self._pending_counts, {}
        for (metric, labels), amount in pending.items():
            self._child(metric, *labels).inc(amount)
        durations, self._pending_seconds = self._pending_seconds, {}
        for kind, seconds in durations.items():
            histogram = self._child(self.review_seconds, kind)
            for value in seconds:
                histogram.observe(value)

    def render(self) -> bytes:
        self._flush()
        return generate_latest(self.registry)

    # --- admissions -------------------------------------------------------

    def admission(self, *, kind: str, decision: Decision, dry_run: bool, seconds: float) -> None:
        mode = decision.mode or "none"
        self._count(self.admissions, (kind, decision.verdict, mode, "true" if dry_run else "false"))
        durations = self._pending_seconds.get(kind)
        if durations is None:
            durations = self._pending_seconds[kind] = []
        durations.append(seconds)
        if len(durations) >= _MOST_PENDING_DURATIONS:
            self._flush()  # nobody scrapes: memory stays bounded all the same
        if not decision.findings:
            return
        # One increment per label set, not per finding: a pod may bring tens of thousands of findings.
        # A warm review often brings the last review's very decision back (core.plans): counted once.
        last, tally = self._last_tally
        if last is not decision:
            tally = collections.Counter((f.policy, f.mode, f.problem) for f in decision.findings)
            self._last_tally = (decision, tally)
        for (policy, finding_mode, problem), count in tally.items():
            self._count(self.findings, (policy, finding_mode, problem), count)

    def review_shed(self) -> None:
        self.shed.inc()

    def policy_counts(self, *, ready: int, invalid: int) -> None:
        self.policies.labels("ready").set(ready)
        self.policies.labels("invalid").set(invalid)

    # --- CallObserver (cloud clients) ------------------------------------

    def upstream_call(self, *, cloud: str, api: str, outcome: str, seconds: float) -> None:
        self.upstream_calls.labels(cloud, api, outcome).inc()
        self.upstream_seconds.labels(cloud, api).observe(seconds)

    def quota_wait(self, *, cloud: str, api: str, seconds: float) -> None:
        self.quota_wait_seconds.labels(cloud, api).inc(seconds)

    # --- FactsObserver (cache and breakers) -------------------------------

    def hit(self, *, cache: str, negative: bool) -> None:
        self._count(self.cache, (cache, "negative_hit" if negative else "hit"))

    def miss(self, *, cache: str, joined: bool) -> None:
        self.cache.labels(cache, "joined" if joined else "miss").inc()

    def stale(self, *, cache: str, reason: str, age: float) -> None:
        self.cache.labels(cache, "stale").inc()

    def timed_out(self, *, cache: str) -> None:
        self.cache.labels(cache, "timed_out").inc()

    def refresh_ahead(self, *, cache: str) -> None:
        self.cache_refresh_ahead.labels(cache).inc()

    def evicted(self, *, cache: str) -> None:
        self.cache_evictions.labels(cache).inc()

    def breaker_state(self, *, cloud: str, state: BreakerState) -> None:
        self.breaker_open.labels(cloud).set(1 if state is BreakerState.OPEN else 0)

    def breaker_rejected(self, *, cloud: str, api: str) -> None:
        self.breaker_rejections.labels(cloud, api).inc()

    # --- SharedFactsObserver (ImageFacts and the leader) -------------------

    def leading(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def store_write(self, *, result: str) -> None:
        self.fact_store_writes.labels(result).inc()

    def miss_waited(self, *, outcome: str, seconds: float) -> None:
        self.fact_misses_waited.labels(outcome).inc()
        self.fact_miss_wait_seconds.observe(seconds)

    def store_degraded(self, *, reason: str) -> None:
        self.fact_store_degraded.inc()

    def pending_by_namespace(self, counts: Mapping[str, int]) -> None:
        # A drained namespace's series is removed: namespaces come and go, and a flood of made-up ones must not stay.
        for namespace in self._pending_namespaces - counts.keys():
            self.pending_lookups.remove(namespace)
        for namespace, count in counts.items():
            self.pending_lookups.labels(namespace).set(count)
        self._pending_namespaces = set(counts)

    def fact_cap(self, *, count: int, reached: bool) -> None:
        self.fact_cap_reached.set(1 if reached else 0)

    def facts_deleted(self, *, count: int) -> None:
        self.facts_deleted_total.inc(count)

    def fact_resolved(self, *, cloud: str, ahead: bool) -> None:
        self.facts_resolved.labels(cloud, "ahead" if ahead else "admission").inc()

    # --- InventoryObserver (the leader's mirror of HSS's image inventory) ---

    def inventory_page(self, *, outcome: str) -> None:
        self.inventory_pages.labels(outcome).inc()

    def inventory_answer(self, *, answer: str) -> None:
        self.inventory_answers.labels(answer).inc()

    def inventory_images(self, *, count: int) -> None:
        self.inventory_images_held.set(count)

    # --- AuditObserver (the leader's background audit) ----------------------

    def audit_pass(self, summary: PassSummary) -> None:
        self.audit_passes.labels(summary.trigger).inc()
        for result, count in summary.by_result.items():
            self.audit_results.labels(result).set(count)
        self.audit_pass_seconds.labels("wall").set(summary.seconds)
        self.audit_pass_seconds.labels("cpu").set(summary.cpu_seconds)
        if summary.reports is not None:
            for outcome in ("written", "deleted", "unchanged", "failed"):
                self.audit_writes.labels("report", outcome).inc(getattr(summary.reports, outcome))
        for outcome in ("written", "unchanged", "failed"):
            self.audit_writes.labels("status", outcome).inc(getattr(summary.statuses, outcome))

    def fact_states(self, counts: Mapping[str, int]) -> None:
        for state, count in counts.items():
            self.facts.labels(state).set(count)
