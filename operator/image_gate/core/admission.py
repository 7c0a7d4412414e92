"""
One admission review, independent of kopf: plan, resolve facts, decide.

The webhook and ``image-gate check`` both call `Admission.review`, so a verdict
from the command line is the verdict the cluster would give.

Facts are resolved concurrently, all images at once, under one deadline per
request: the API server gives up after its ``timeoutSeconds`` and then applies
``failurePolicy``, which must never happen because a cloud was slow. A lookup
that misses the deadline keeps running in the cache; the review reports it as
unresolved, and the policy's ``onUnresolved`` decides. A fact answered stale
(a cloud failed, the cache still had it) is judged like a fresh one, and the
review says so: `Review.stale` for the log line, a warning in `Review.warnings`.

The deadline bounds the whole review, not only the lookups: a pod of
thousands of containers costs real CPU to plan, judge and word. Planning
comes first; the lookups then get what is left minus a reserve for judging
and wording (per (container, policy) pair to judge, and at least a multiple
of what planning took, so a starved CPU keeps back more); when that runs
out, every lookup still going is left to the cache and its facts are
unresolved (each policy's ``onUnresolved`` decides). What comes before the
review (reading the containers, ~30 ms for 5,000) and after it (JSON, TLS)
is the chart's margin (see the chart README).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from image_gate.core import messages
from image_gate.core.clock import Clock, Deadline, Sleep, monotonic
from image_gate.core.clock import sleep as asyncio_sleep
from image_gate.core.evaluate import Decision, Plan, Subject
from image_gate.core.imagefacts import ImageFacts, StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import TimedOut
from image_gate.core.plans import PlanCache
from image_gate.core.policy import CompiledPolicy
from image_gate.core.workloads import Container

__all__ = ["ANSWER_BY", "Admission", "CachedFactSource", "FactSource", "Review", "changed_containers"]

ANSWER_BY: ContextVar[Deadline | None] = ContextVar("ANSWER_BY", default=None)
"""The latest the caller can still use a verdict: the API server's ``timeout`` for this review, counted
by the server from the review's arrival (`image_gate.kube.server`). A review that waited for the CPU
gets only what is left of it, so even a cold one answers in time; None: the deadline alone counts."""


class FactSource(Protocol):
    """What resolves facts: ``image_gate.facts.resolver.FactResolver`` in production."""

    async def resolve(
        self, image: ImageReference, *, base_image: bool, digest: bool, deadline: Deadline
    ) -> ImageFacts: ...


@runtime_checkable
class CachedFactSource(FactSource, Protocol):
    """A `FactSource` that can also answer without a wait: ``FactResolver`` in production."""

    def answered_at_once(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        """The facts `resolve` would answer, when it would answer them without awaiting anything; else None,
        and nothing recorded (`resolve` is then asked)."""
        ...


@dataclass(frozen=True, slots=True)
class Review:
    """A finished review: what was judged, the verdict, and the stale facts it stood on."""

    subject: Subject
    plan: Plan
    decision: Decision
    seconds: float
    stale: Mapping[ImageReference, tuple[StaleFact, ...]] = field(default_factory=dict)
    """Per image, the facts answered past their TTL because the cloud failed; only images that have some."""

    @property
    def deny_message(self) -> str:
        return messages.deny_message(self.subject.kind, self.subject.display_name, self.decision.denials)

    @property
    def warnings(self) -> list[str]:
        """The admission warnings: warning findings, then the stale facts a policy that speaks up relied on.

        Facts seen only by Audit policies stay out: such a policy changes nothing
        the user sees, and neither should the age of its facts.
        """
        warnings = messages.warning_messages(self.decision.warnings)
        if self.stale:
            heard = {
                c.image
                for c in self.plan.containers
                if isinstance(c.image, ImageReference) and any(p.mode != "Audit" for p in c.policies)
            }
            warnings += [
                messages.stale_warning(image, fact)
                for image, facts in self.stale.items()
                if image in heard
                for fact in facts
            ]
        return warnings

    def stale_as_data(self) -> list[dict[str, object]]:
        """The stale facts as plain data, for the log line and ``image-gate check --output json``."""
        return [{"image": str(image), **fact.as_dict()} for image, facts in self.stale.items() for fact in facts]


SECONDS_PER_JUDGEMENT = 200e-6
"""What judging one (container, policy) pair and wording its findings costs, generously: measured at
10-200 us on a 2-core machine under a load of 5-8, inside a test process of a whole suite (a
5,000-container pod under 3-5 policies: 15,000-25,000 pairs, two findings each). A pod of a few
containers keeps back a few milliseconds. The reserve is capped at two thirds of the deadline, so
the lookups of even the largest pod get a third."""
JUDGING_PER_PLANNING = 3.0
"""Judging takes 2-10 times as long as planning did (both walk every container and policy); planning's
measured time is how a starved CPU shows up before the lookups start, so the reserve is at least this
multiple of it."""
CONCURRENT_LOOKUPS = 128
"""Lookups of one review running at once; see `Admission._resolve`."""


class Admission:
    def __init__(
        self,
        facts: FactSource,
        *,
        deadline: float = 3.0,
        clock: Clock = monotonic,
        sleep: Sleep = asyncio_sleep,
        plans: PlanCache | None = None,
    ) -> None:
        self._facts = facts
        self._at_once = facts.answered_at_once if isinstance(facts, CachedFactSource) else None
        self._deadline = deadline
        self._clock = clock
        self._sleep = sleep
        self._plans = plans if plans is not None else PlanCache()
        self.waiting = 0
        """Reviews now waiting for lookups (a cloud, the leader): in flight, but not using the CPU."""
        self.waited = 0
        """Reviews that waited for lookups, so far (`image_gate.kube.overload` times only reviews that did not)."""

    async def review(self, subject: Subject, policies: Sequence[CompiledPolicy]) -> Review:
        started = self._clock()
        limit = self._deadline
        answer_by = ANSWER_BY.get()
        if answer_by is not None:
            limit = min(limit, answer_by.remaining())
        deadline = Deadline(at=started + limit, clock=self._clock)
        remembered = self._plans.remembered(subject, policies)
        the_plan = remembered.plan_for(subject)
        reserve = self._reserve(the_plan, planning=self._clock() - started, limit=limit)
        facts = await self._resolve(the_plan, Deadline(at=deadline.at - reserve, clock=self._clock))
        decision = remembered.decide(the_plan, facts)
        stale = {image: known.stale for image, known in facts.items() if known.stale}
        return Review(subject=subject, plan=the_plan, decision=decision, seconds=self._clock() - started, stale=stale)

    def _reserve(self, the_plan: Plan, *, planning: float, limit: float) -> float:
        """The time kept back from the lookups for judging and wording; at most two thirds of the time there is."""
        judgements = sum(len(planned.policies) for planned in the_plan.containers)
        estimate = max(judgements * SECONDS_PER_JUDGEMENT, planning * JUDGING_PER_PLANNING)
        return min(limit * 2 / 3, estimate)

    async def _resolve(self, the_plan: Plan, deadline: Deadline) -> Mapping[ImageReference, ImageFacts]:
        """The facts the plan needs, as far as they are known at ``deadline``.

        Each lookup bounds itself by the deadline, but thousands of them on one
        event loop would not: one turn of the loop would start them all, and
        no timer fires in the middle of a turn. So at most `CONCURRENT_LOOKUPS`
        run at once (the clouds' quotas allow far fewer calls than that
        anyway), none starts after the deadline, and whatever still runs then
        is cancelled here (the cache's shared lookups go on for the next
        review). Facts not known by then are answered as timed out.
        """
        wanted = [
            (image, needs) for image, needs in the_plan.needs.items() if needs.base_image or needs.registry_digest
        ]
        if not wanted:
            return {}
        facts: dict[ImageReference, ImageFacts] = {}
        waiting = wanted
        if self._at_once is not None:
            # What the caches answer at once needs no task, timer or turn of the loop: every image of a warm
            # review (most of them). Only the rest is looked up.
            waiting = []
            for image, needs in wanted:
                known = self._at_once(image, base_image=needs.base_image, digest=needs.registry_digest)
                if known is None:
                    waiting.append((image, needs))
                else:
                    facts[image] = known
            if not waiting:
                return facts
        queue = iter(waiting)

        async def look_up() -> None:
            for image, needs in queue:
                if deadline.remaining() <= 0:
                    return
                facts[image] = await self._facts.resolve(
                    image, base_image=needs.base_image, digest=needs.registry_digest, deadline=deadline
                )

        # One worker and one turn of the loop first: lookups the cache answers finish without suspending
        # (what a source that cannot answer at once, `SharedFacts`, has at hand), so in a warm review that
        # worker answers every image, and the review needs no more tasks, no timer, gather or wait. Only
        # when it is still waiting do the other workers start (one turn later) and the timer run, until
        # the same deadline.
        first = asyncio.ensure_future(look_up())
        await asyncio.sleep(0)
        if first.done():
            first.result()  # a resolver answers outcomes; one that raised is a bug: an HTTP 500
        else:
            others = [asyncio.ensure_future(look_up()) for _ in range(min(CONCURRENT_LOOKUPS, len(waiting)) - 1)]
            self.waiting += 1
            self.waited += 1
            try:
                await self._finish_by_deadline([first, *others], deadline)
            finally:
                self.waiting -= 1
        if len(facts) < len(wanted):  # the plan's images are distinct: some were not answered in time
            late = self._late()
            for image, needs in wanted:
                if image not in facts:
                    facts[image] = ImageFacts(
                        base_image=late if needs.base_image else None,
                        registry_digest=late if needs.registry_digest else None,
                    )
        return facts

    async def _finish_by_deadline(self, workers: Sequence[asyncio.Task[None]], deadline: Deadline) -> None:
        """Wait for ``workers`` until ``deadline``, then cancel whatever still runs."""
        everything: asyncio.Future[Any] = asyncio.gather(*workers)
        timer: asyncio.Future[Any] = asyncio.ensure_future(self._sleep(deadline.remaining()))
        try:
            await asyncio.wait({everything, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            for worker in workers:
                worker.cancel()  # done ones ignore it
        if everything.done() and not everything.cancelled():
            everything.result()  # a resolver answers outcomes; one that raised is a bug: an HTTP 500

    def _late(self) -> TimedOut:
        return TimedOut(
            cloud="image-gate",
            api="review",
            detail=f"the review's deadline of {self._deadline:g}s came before this lookup's answer",
        )


def changed_containers(new: Sequence[Container], old: Sequence[Container]) -> tuple[Container, ...]:
    """The containers of an UPDATE whose image is new or changed.

    An update that keeps an image (a label change, a scale, adding an ephemeral
    container) does not re-judge it: a policy tightened since must not make
    unrelated edits of running workloads fail.
    """
    before = {(c.kind, c.name, c.image) for c in old}
    return tuple(c for c in new if (c.kind, c.name, c.image) not in before)
