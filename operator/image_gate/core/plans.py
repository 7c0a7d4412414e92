"""
Plans and verdicts remembered per (policy set, namespace, containers): what a warm review recomputed every time.

Which policies cover which container, and which facts each image needs, depend only
on the policies in force, the namespace (name and labels) and the containers: a
Deployment's pods bring the same ones over and over. Parsing each image and matching
it against every policy took about a fifth of a warm review's CPU. `PlanCache` keeps
the plan of the last `PlanCache.size` such keys.

The verdict is a pure function of the plan and the facts (`image_gate.core.evaluate.decide`),
so each remembered plan also keeps the last facts it was judged on and the decision.
The facts are always resolved again, through the caches, for every review: a fact
that expired, was refreshed or turned stale is a different value, and the decision is
then worked out again. Only a review whose facts equal the last ones gets the same
decision, which `decide` would have returned anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from image_gate.core.evaluate import Decision, ImageNeeds, Plan, PlannedContainer, Subject, decide, plan
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.policy import CompiledPolicy
from image_gate.core.workloads import Container

__all__ = ["PlanCache", "RememberedPlan"]

_Key = tuple[tuple[int, ...], str, tuple[tuple[str, str], ...], tuple[Container, ...]]


@dataclass(eq=False, slots=True)
class RememberedPlan:
    """One key's plan (without its subject: the object's name changes from pod to pod) and last verdict."""

    policies: tuple[CompiledPolicy, ...]
    """Held so that the ids in the key stay theirs: an id is only unique while its object lives."""
    containers: tuple[PlannedContainer, ...]
    needs: Mapping[ImageReference, ImageNeeds]
    judged_on: tuple[ImageFacts | None, ...] | None = field(default=None)
    decision: Decision | None = field(default=None)

    def plan_for(self, subject: Subject) -> Plan:
        return Plan(subject=subject, containers=self.containers, needs=self.needs)

    def decide(self, the_plan: Plan, facts: Mapping[ImageReference, ImageFacts]) -> Decision:
        """`decide`'s answer for ``facts``; the last one again when the facts are the same values."""
        judged_on = tuple(facts.get(image) for image in self.needs)
        if self.decision is not None and judged_on == self.judged_on:
            return self.decision
        decision = decide(the_plan, facts)
        self.judged_on, self.decision = judged_on, decision
        return decision


class PlanCache:
    """The plans of the most recently reviewed (policy set, namespace, containers), least recent dropped first.

    Objects of more than ``max_containers`` containers are planned every time: they are
    rare, their plans large, and planning is linear in the containers anyway.
    """

    def __init__(self, *, size: int = 1024, max_containers: int = 32) -> None:
        self.size = size
        self.max_containers = max_containers
        self._plans: OrderedDict[_Key, RememberedPlan] = OrderedDict()

    def __len__(self) -> int:
        return len(self._plans)

    def remembered(self, subject: Subject, policies: Sequence[CompiledPolicy]) -> RememberedPlan:
        """The plan for ``subject`` under ``policies``: remembered, or made now (and remembered if small)."""
        if len(subject.containers) > self.max_containers:
            return _made(subject, policies)
        key: _Key = (
            tuple(map(id, policies)),
            subject.namespace,
            tuple(subject.namespace_labels.items()),
            subject.containers,
        )
        known = self._plans.get(key)
        if known is not None:
            self._plans.move_to_end(key)
            return known
        made = self._plans[key] = _made(subject, policies)
        if len(self._plans) > self.size:
            self._plans.popitem(last=False)
        return made


def _made(subject: Subject, policies: Sequence[CompiledPolicy]) -> RememberedPlan:
    the_plan = plan(subject, policies)
    return RememberedPlan(policies=tuple(policies), containers=the_plan.containers, needs=the_plan.needs)
