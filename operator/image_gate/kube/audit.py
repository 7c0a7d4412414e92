"""
The leader's background audit: what runs, judged against every Ready policy, as reports and policy status.

Every replica keeps the indexes of what runs (`image_gate.kube.audit_index`);
only the replica holding the Lease runs passes (`Auditor.start_leading`). A
pass reads the indexes (no API call), judges with the webhook's evaluation and
the stored facts only (`image_gate.core.audit.audit` with
``SharedFacts.known``), asks the resolver for the facts it lacked
(``SharedFacts.prefetch``, priority ``running``: below every admission miss,
above new images) and writes what changed (`ReportWriter`,
`PolicyStatusWriter`). A fact not stored yet is an ``error`` result until it
arrives; its arrival brings the next pass.

When a pass runs:

* when this replica starts leading (the indexes are complete: every replica
  keeps them, so a takeover needs no relisting), then every ``interval``;
* ``debounce`` seconds after a policy is created, changed (a new generation)
  or deleted, so a burst of ``kubectl apply`` makes one pass;
* ``debounce`` seconds after a fact that a pass used changes its outcome (a
  tag re-pushed, HSS finishing a scan, a missing fact resolved).

Workloads changing do not start a pass of their own: pods churn all the time
in a large cluster, and the next timed pass (or fact change: a new image's
fact arriving) catches them.

The pass runs on the event loop in slices of `AuditSettings.batch` objects,
yielding between them, so the leader keeps answering reviews during a pass
over thousands of pods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import kopf

from image_gate.core.audit import AuditResult, KnownFacts, audit
from image_gate.core.clock import Clock, Sleep, monotonic, sleep
from image_gate.core.images import ImageReference
from image_gate.core.policy import CompiledPolicy
from image_gate.core.reports import FirstSeen, Flavour, policy_audit_status, policy_reports
from image_gate.facts.records import StoredFact
from image_gate.facts.store import Priority
from image_gate.kube.audit_index import AuditIndexes
from image_gate.kube.audit_reports import REPORT_KINDS, ReportWriter, SyncCounts, served
from image_gate.kube.audit_status import STATUS_REFRESH, PolicyStatusWriter, StatusCounts
from image_gate.kube.audit_triggers import PassTriggers
from image_gate.kube.controller import POLICY_RESOURCE
from image_gate.kube.kubeapi import ApiError, KubeApi

__all__ = [
    "AuditObserver",
    "AuditSettings",
    "Auditor",
    "FlavourSetting",
    "PassSummary",
    "RunningFacts",
    "register_audit_triggers",
]

logger = logging.getLogger(__name__)

FlavourSetting = Literal["auto", "wgpolicy", "openreports"]


class RunningFacts(KnownFacts, Protocol):
    """The facts a pass reads (`KnownFacts`), and how it asks for the missing ones (``SharedFacts``)."""

    def prefetch(self, image: ImageReference, *, base_image: bool, digest: bool, priority: Priority) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditSettings:
    interval: float = 600.0
    """Seconds between timed passes."""
    debounce: float = 5.0
    """Seconds from a policy or fact change to its pass (changes meanwhile join the same pass)."""
    reports: bool = True
    """Write policy reports (the policies' ``status.audit`` is written either way)."""
    flavour: FlavourSetting = "auto"
    """``auto``: OpenReports when its CRD is served, else the policy WG's PolicyReport."""
    batch: int = 500
    """Objects judged between two turns of the event loop."""
    status_refresh: float = STATUS_REFRESH
    """A policy's unchanged ``status.audit`` gets a new ``lastPass`` after this many seconds."""
    exempt_namespaces: frozenset[str] = frozenset()
    """Namespaces the webhook never judges (image-gate's own among them): the audit does not judge them either."""


@dataclass(frozen=True, slots=True)
class PassSummary:
    """What one pass did, for the log, the metrics and tests."""

    reason: str
    """Why it ran, in words: ``timer``, ``leading``, ``policy NAME generation N``, ``fact NAME changed``."""
    objects: int
    policies: int
    results: int
    violations: int
    missing: int
    reports: SyncCounts | None
    """None when no report was written: reports are off, or no report CRD is served."""
    statuses: StatusCounts
    seconds: float
    cpu_seconds: float
    by_result: Mapping[str, int]
    """Results by kind (pass, fail, warn, error, skip), every kind present."""

    @property
    def trigger(self) -> str:
        """The reason's first word: timer, leading, policy, fact (bounded, for a metric label)."""
        return self.reason.split(" ", 1)[0]


class AuditObserver(Protocol):
    """Told of every pass (the metrics)."""

    def audit_pass(self, summary: PassSummary) -> None: ...


class _NoObserver:
    def audit_pass(self, summary: PassSummary) -> None:
        pass


class Auditor:
    """Runs passes while this replica leads; told of policy and fact changes by the watches."""

    def __init__(
        self,
        api: KubeApi,
        indexes: AuditIndexes,
        facts: RunningFacts,
        settings: AuditSettings,
        *,
        clock: Clock = monotonic,
        wall: Clock = time.time,
        sleep: Sleep = sleep,
        observer: AuditObserver | None = None,
    ) -> None:
        self.settings = settings
        self._observer: AuditObserver = observer if observer is not None else _NoObserver()
        self._api = api
        self._indexes = indexes
        self._facts = facts
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._status = PolicyStatusWriter(api, refresh_after=settings.status_refresh, wall=wall)
        self._reports: tuple[Flavour, ReportWriter] | None = None
        self._no_reports_said = False
        self._first_seen = FirstSeen()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.triggers = PassTriggers(debounce=settings.debounce, clock=clock, on_due=self._wake.set)
        self.last: PassSummary | None = None

    # -- leadership

    @property
    def leading(self) -> bool:
        return self._task is not None

    def start_leading(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._lead(), name="image-gate audit")

    def stop_leading(self) -> None:
        """The Lease is lost: no more passes or writes; the next leadership reads the cluster again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self._status.forget()
        if self._reports is not None:
            self._reports[1].forget()
        self._first_seen = FirstSeen()

    async def aclose(self) -> None:
        task = self._task
        self.stop_leading()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # -- triggers

    def policy_event(self, event: str | None, name: str, generation: object) -> None:
        """A policy the watch delivered (see `PassTriggers.policy`)."""
        self.triggers.policy(event, name, generation)

    def fact_event(self, stored: StoredFact) -> None:
        """An ImageFact the watch delivered (see `PassTriggers.fact`)."""
        self.triggers.fact(stored)

    # -- the passes

    async def _lead(self) -> None:
        while not self._indexes.attached:  # a replica that leads from its start: until kopf filled the indexes
            await self._sleep(0.5)
        triggers = self.triggers
        triggers.clear()
        next_timed = self._clock()
        reason = "leading"
        while True:
            now = self._clock()
            due = next_timed if triggers.due is None else min(next_timed, triggers.due)
            if now < due:
                self._wake.clear()
                await self._wait(due - now)
                continue
            reason = triggers.take() or reason
            try:
                await self.run_pass(reason)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one pass must not end the audit
                logger.exception("the audit pass failed")
            next_timed = self._clock() + self.settings.interval
            reason = "timer"

    async def _wait(self, seconds: float) -> None:
        timer = asyncio.ensure_future(self._sleep(seconds))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({timer, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            woken.cancel()

    async def run_pass(self, reason: str = "asked") -> PassSummary:
        """One pass: judge, ask for what is missing, write what changed."""
        started, cpu = self._clock(), time.process_time()
        exempt = self.settings.exempt_namespaces
        objects = [obj for obj in self._indexes.objects() if obj.namespace not in exempt]
        policies = self._indexes.policies()
        results: list[AuditResult] = []
        missing: set[tuple[ImageReference, bool, bool]] = set()
        batch = max(1, self.settings.batch)
        for start in range(0, len(objects), batch):
            judged = audit(objects[start : start + batch], policies, self._indexes.namespace_labels, self._facts)
            results.extend(judged.results)
            missing |= judged.missing
            await asyncio.sleep(0)  # reviews waiting on this replica get their turn
        for image, base_image, digest in missing:
            self._facts.prefetch(image, base_image=base_image, digest=digest, priority="running")
        self.triggers.judged(_references(results))
        at = self._wall()
        self._first_seen.update(results, at=at)
        try:
            report_counts = await self._write_reports(results)
        except ApiError as exc:  # our reports could not even be listed: read them again next time
            logger.warning("the policy reports were not written: %s", exc)
            self._reports = None
            report_counts = None
        try:
            statuses = await self._status.write(_statuses(results, policies, at=at))
        except ApiError as exc:
            logger.warning("the policies' status.audit was not written: %s", exc)
            self._status.forget()
            statuses = StatusCounts(failed=len(policies))
        summary = PassSummary(
            reason=reason,
            objects=len(objects),
            policies=len(policies),
            results=len(results),
            violations=sum(1 for r in results if r.result in ("fail", "warn")),
            missing=len(missing),
            reports=report_counts,
            statuses=statuses,
            seconds=self._clock() - started,
            cpu_seconds=time.process_time() - cpu,
            by_result=_by_result(results),
        )
        self.last = summary
        self._observer.audit_pass(summary)
        logger.info(
            "audit pass (%s): %d objects x %d policies -> %d results, %d violations, %d facts missing; "
            "reports %s; policy status %d written, %d unchanged; %.2fs (%.2fs CPU)",
            reason,
            summary.objects,
            summary.policies,
            summary.results,
            summary.violations,
            summary.missing,
            _describe(report_counts),
            statuses.written,
            statuses.unchanged,
            summary.seconds,
            summary.cpu_seconds,
        )
        return summary

    async def _write_reports(self, results: list[AuditResult]) -> SyncCounts | None:
        if not self.settings.reports:
            return None
        if self._reports is None:
            flavour = await self._served_flavour()
            if flavour is None:
                if not self._no_reports_said:
                    logger.warning(
                        "no policy report CRD is served (%s): the audit writes only the policies' status.audit; "
                        "install the wgpolicyk8s.io CRDs (the chart's policyReports.installCRDs) to get reports",
                        self.settings.flavour,
                    )
                    self._no_reports_said = True
                return None
            self._reports = (flavour, ReportWriter(self._api, REPORT_KINDS[flavour]))
            logger.info("the audit writes %s reports", REPORT_KINDS[flavour].collection().rsplit("/", 1)[0])
        flavour, writer = self._reports
        return await writer.sync(policy_reports(results, flavour=flavour, timestamps=self._first_seen))

    async def _served_flavour(self) -> Flavour | None:
        wanted: tuple[Flavour, ...] = (
            ("openreports", "wgpolicy") if self.settings.flavour == "auto" else (self.settings.flavour,)
        )
        for flavour in wanted:
            kind = REPORT_KINDS[flavour]
            if await served(self._api, kind.group, kind.version, kind.plural):
                return flavour
        return None


def _references(results: Iterable[AuditResult]) -> frozenset[str]:
    """The normalised references (as ImageFacts spell them) of the images in ``results``."""
    spelled: dict[str, str | None] = {}
    for result in results:
        if result.image not in spelled:
            try:
                spelled[result.image] = ImageReference.parse(result.image).normalized
            except ValueError:
                spelled[result.image] = None
    return frozenset(reference for reference in spelled.values() if reference is not None)


def _statuses(
    results: Iterable[AuditResult], policies: Iterable[CompiledPolicy], *, at: float
) -> dict[str, dict[str, Any]]:
    by_policy: dict[str, list[AuditResult]] = defaultdict(list)
    for result in results:
        by_policy[result.policy].append(result)
    return {policy.name: policy_audit_status(by_policy[policy.name], policy.name, at=at) for policy in policies}


def _by_result(results: Iterable[AuditResult]) -> dict[str, int]:
    counts = dict.fromkeys(("pass", "fail", "warn", "error", "skip"), 0)
    for result in results:
        counts[result.result] += 1
    return counts


def _describe(counts: SyncCounts | None) -> str:
    if counts is None:
        return "not written"  # off, or no report CRD served (said once), or they could not be listed (said)
    return f"{counts.written} written, {counts.deleted} deleted, {counts.unchanged} unchanged, {counts.failed} failed"


def register_audit_triggers(registry: kopf.OperatorRegistry, auditor: Auditor) -> None:
    """Policy events start a pass (a new generation, or deleted); a status write by anyone does not."""

    @kopf.on.event(*POLICY_RESOURCE, id="audit-policy", registry=registry)
    async def policy_changed(type: str | None, name: str, meta: kopf.Meta, **_: Any) -> None:
        auditor.policy_event(type, name, meta.get("generation"))
