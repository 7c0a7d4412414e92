"""
Policies + facts -> decision. Pure: no I/O, no clock, no Kubernetes client.

Admission runs in three steps, and this module owns the first and the last:

1. `plan`: which policies cover which containers, and which facts (base image,
   registry digest) each image needs -- so only those are looked up;
2. the caller resolves the facts (the webhook through the cache, concurrently;
   ``image-gate check`` the same way);
3. `decide`: every covering policy must pass (AND). Each failed rule becomes a
   `Finding`; the policy's mode says what a finding does:

   * ``Enforce``: a violation denies; a lookup failure denies when
     ``onUnresolved: Deny`` and warns when ``Allow``;
   * ``Warn``: everything is admitted, findings become admission warnings;
   * ``Audit``: everything is admitted, findings are only counted and logged.

An image string that is not a valid reference is a violation of every policy
covering the namespace: the policies cannot tell what it is, and the node
could not pull it either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from image_gate.core import messages
from image_gate.core.images import ImageReference, InvalidImageReference
from image_gate.core.outcomes import BaseImage, Found, Outcome
from image_gate.core.policy import BaseImageRules, CompiledPolicy, DigestRules, Mode, OnUnresolved
from image_gate.core.workloads import Container

__all__ = ["Decision", "Finding", "ImageNeeds", "Plan", "PlannedContainer", "Subject", "decide", "plan"]

Problem = Literal["violation", "unresolved"]


@dataclass(frozen=True, slots=True)
class Subject:
    """What is being admitted: the object's kind, name, namespace (with labels) and containers."""

    kind: str
    name: str
    namespace: str
    namespace_labels: Mapping[str, str]
    containers: tuple[Container, ...]


class FactsView(Protocol):
    """The facts resolved for one image (``image_gate.facts.resolver.ImageFacts`` fits)."""

    @property
    def base_image(self) -> Outcome[BaseImage] | None: ...

    @property
    def registry_digest(self) -> Outcome[str] | None: ...


@dataclass(frozen=True, slots=True)
class ImageNeeds:
    base_image: bool = False
    registry_digest: bool = False

    def __or__(self, other: ImageNeeds) -> ImageNeeds:
        return ImageNeeds(
            base_image=self.base_image or other.base_image,
            registry_digest=self.registry_digest or other.registry_digest,
        )


@dataclass(frozen=True, slots=True)
class PlannedContainer:
    container: Container
    image: ImageReference | InvalidImageReference
    policies: tuple[CompiledPolicy, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    subject: Subject
    containers: tuple[PlannedContainer, ...]
    needs: Mapping[ImageReference, ImageNeeds]
    """Facts to resolve, per distinct image: the union of what covering policies need."""

    @property
    def policy_names(self) -> tuple[str, ...]:
        return tuple(sorted({p.name for c in self.containers for p in c.policies}))


@dataclass(frozen=True, slots=True)
class Finding:
    container: Container
    policy: str
    mode: Mode
    on_unresolved: OnUnresolved
    rule: str
    problem: Problem
    found: str
    expected: str = ""

    @property
    def denies(self) -> bool:
        return self.mode == "Enforce" and (self.problem == "violation" or self.on_unresolved == "Deny")

    @property
    def warns(self) -> bool:
        return self.mode == "Warn" or (self.mode == "Enforce" and not self.denies)

    def as_dict(self) -> dict[str, object]:
        """The finding as plain data, for JSON logs and ``image-gate check --output json``."""
        return {
            "container": self.container.name,
            "image": self.container.image,
            "policy": self.policy,
            "mode": self.mode,
            "rule": self.rule,
            "problem": self.problem,
            "found": self.found,
            "expected": self.expected,
            "denies": self.denies,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    findings: tuple[Finding, ...] = ()
    policies: tuple[str, ...] = ()
    """The policies that covered something in the object."""
    mode: Mode | None = field(default=None)
    """The strictest mode among the covering policies, for metrics."""

    @property
    def verdict(self) -> str:
        """``denied``, ``warned`` (admitted with warnings) or ``allowed``: for metrics and logs."""
        if not self.allowed:
            return "denied"
        return "warned" if self.warnings else "allowed"

    @property
    def denials(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.denies)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.warns)

    @property
    def audits(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.mode == "Audit")

    def deny_message(self, subject: Subject) -> str:
        return messages.deny_message(subject.kind, subject.name, self.denials)

    def warning_messages(self) -> list[str]:
        return [messages.warning_message(f) for f in self.warnings]


def plan(subject: Subject, policies: Sequence[CompiledPolicy]) -> Plan:
    """Which policies cover which container, and which facts each image needs."""
    in_namespace = [p for p in policies if p.covers_namespace(subject.namespace, subject.namespace_labels)]
    planned: list[PlannedContainer] = []
    needs: dict[ImageReference, ImageNeeds] = {}
    for container in subject.containers:
        try:
            image: ImageReference | InvalidImageReference = ImageReference.parse(container.image)
        except InvalidImageReference as exc:
            planned.append(PlannedContainer(container, exc, tuple(in_namespace)))
            continue
        assert isinstance(image, ImageReference)
        covering = tuple(p for p in in_namespace if p.covers_image(image))
        planned.append(PlannedContainer(container, image, covering))
        for policy in covering:
            wanted = ImageNeeds(base_image=policy.needs_base_image, registry_digest=policy.needs_registry_digest(image))
            needs[image] = needs.get(image, ImageNeeds()) | wanted
    return Plan(subject=subject, containers=tuple(planned), needs=needs)


def decide(the_plan: Plan, facts: Mapping[ImageReference, FactsView]) -> Decision:
    """Judge every planned container under every policy covering it."""
    findings: list[Finding] = []
    for planned in the_plan.containers:
        for policy in planned.policies:
            for rule, problem, found, expected in _judge(planned.image, policy, facts):
                findings.append(
                    Finding(
                        container=planned.container,
                        policy=policy.name,
                        mode=policy.mode,
                        on_unresolved=policy.on_unresolved,
                        rule=rule,
                        problem=problem,
                        found=found,
                        expected=expected,
                    )
                )
    modes = {p.mode for c in the_plan.containers for p in c.policies}
    strictest = next((m for m in ("Enforce", "Warn", "Audit") if m in modes), None)
    return Decision(
        allowed=not any(f.denies for f in findings),
        findings=tuple(findings),
        policies=the_plan.policy_names,
        mode=strictest,
    )


_Result = tuple[str, Problem, str, str]


def _judge(
    image: ImageReference | InvalidImageReference,
    policy: CompiledPolicy,
    facts: Mapping[ImageReference, FactsView],
) -> list[_Result]:
    if isinstance(image, InvalidImageReference):
        return [("image", "violation", image.reason, "a valid image reference")]
    known = facts.get(image)
    results: list[_Result] = []
    if policy.base_image is not None:
        results += _judge_base_image(policy.base_image, known.base_image if known else None)
    if policy.digest is not None:
        results += _judge_digest(policy.digest, image, known.registry_digest if known else None)
    return results


def _judge_base_image(rules: BaseImageRules, outcome: Outcome[BaseImage] | None) -> list[_Result]:
    if not isinstance(outcome, Found):
        return [("baseImage", "unresolved", messages.describe_outcome(outcome, fact="base image"), "")]
    base = outcome.value
    found = messages.describe_os(base)
    results: list[_Result] = []
    if rules.allowed_os and not any(rule.matches(base.os_name, base.os_version) for rule in rules.allowed_os):
        results.append(("baseImage.allowedOS", "violation", found, messages.one_of(rules.allowed_os)))
    for rule in rules.denied_os:
        if rule.matches(base.os_name, base.os_version):
            results.append(("baseImage.deniedOS", "violation", found, f"not {rule}"))
    if rules.allowed_layer_digests and base.layer_digest not in rules.allowed_layer_digests:
        results.append(
            (
                "baseImage.allowedLayerDigests",
                "violation",
                f"base layer {base.layer_digest or '(none)'} ({found})",
                f"one of {len(rules.allowed_layer_digests)} approved base layers",
            )
        )
    return results


def _judge_digest(rules: DigestRules, image: ImageReference, outcome: Outcome[str] | None) -> list[_Result]:
    results: list[_Result] = []
    if rules.require_pinned and image.digest is None:
        results.append(("digest.requirePinned", "violation", f"tag {image.tag}", "a reference by digest (@sha256:...)"))
    if rules.allowed:
        if image.digest is not None:
            effective: str | None = image.digest
        elif isinstance(outcome, Found):
            effective = outcome.value
        else:
            effective = None
            results.append(
                ("digest.allowed", "unresolved", messages.describe_outcome(outcome, fact="registry digest"), "")
            )
        if effective is not None and effective not in rules.allowed:
            results.append(("digest.allowed", "violation", effective, f"one of {len(rules.allowed)} allowed digests"))
    if rules.match_registry and image.digest is not None and image.tag is not None:
        if not isinstance(outcome, Found):
            results.append(
                ("digest.matchRegistry", "unresolved", messages.describe_outcome(outcome, fact="registry digest"), "")
            )
        elif outcome.value != image.digest:
            results.append(
                (
                    "digest.matchRegistry",
                    "violation",
                    f"pinned {image.digest}",
                    f"{outcome.value}, the registry's digest for tag {image.tag}",
                )
            )
    return results
