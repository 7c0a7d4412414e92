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
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from image_gate.core import messages
from image_gate.core.clock import Clock, Deadline, monotonic
from image_gate.core.evaluate import Decision, Plan, Subject, decide, plan
from image_gate.core.imagefacts import ImageFacts, StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.policy import CompiledPolicy
from image_gate.core.workloads import Container

__all__ = ["Admission", "FactSource", "Review", "changed_containers"]


class FactSource(Protocol):
    """What resolves facts: ``image_gate.facts.resolver.FactResolver`` in production."""

    async def resolve(
        self, image: ImageReference, *, base_image: bool, digest: bool, deadline: Deadline
    ) -> ImageFacts: ...


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


class Admission:
    def __init__(self, facts: FactSource, *, deadline: float = 3.0, clock: Clock = monotonic) -> None:
        self._facts = facts
        self._deadline = deadline
        self._clock = clock

    async def review(self, subject: Subject, policies: Sequence[CompiledPolicy]) -> Review:
        started = self._clock()
        deadline = Deadline(at=started + self._deadline, clock=self._clock)
        the_plan = plan(subject, policies)
        facts = await self._resolve(the_plan, deadline)
        decision = decide(the_plan, facts)
        stale = {image: known.stale for image, known in facts.items() if known.stale}
        return Review(subject=subject, plan=the_plan, decision=decision, seconds=self._clock() - started, stale=stale)

    async def _resolve(self, the_plan: Plan, deadline: Deadline) -> Mapping[ImageReference, ImageFacts]:
        wanted = [
            (image, needs) for image, needs in the_plan.needs.items() if needs.base_image or needs.registry_digest
        ]
        if not wanted:
            return {}
        results = await asyncio.gather(
            *(
                self._facts.resolve(image, base_image=needs.base_image, digest=needs.registry_digest, deadline=deadline)
                for image, needs in wanted
            )
        )
        return {image: facts for (image, _), facts in zip(wanted, results, strict=True)}


def changed_containers(new: Sequence[Container], old: Sequence[Container]) -> tuple[Container, ...]:
    """The containers of an UPDATE whose image is new or changed.

    An update that keeps an image (a label change, a scale, adding an ephemeral
    container) does not re-judge it: a policy tightened since must not make
    unrelated edits of running workloads fail.
    """
    before = {(c.kind, c.name, c.image) for c in old}
    return tuple(c for c in new if (c.kind, c.name, c.image) not in before)
