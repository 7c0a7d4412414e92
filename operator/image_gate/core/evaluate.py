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

from image_gate.core.findings import (
    AllowedDigests,
    AllowedOS,
    ApprovedLayers,
    BaseLayer,
    Digest,
    ExpectedValue,
    Finding,
    FoundValue,
    InvalidReference,
    NotOS,
    OperatingSystem,
    PinnedDigest,
    PinnedReference,
    RegistryDigest,
    Tag,
    Unresolved,
    ValidReference,
)
from image_gate.core.imagefacts import FactName, ImageFacts
from image_gate.core.images import ImageReference, InvalidImageReference
from image_gate.core.outcomes import BaseImage, Failure, Found, NotApplicable, NotFound, Outcome
from image_gate.core.policy import BaseImageRules, CompiledPolicy, DigestRules, Mode
from image_gate.core.workloads import Container

__all__ = ["Decision", "ImageNeeds", "Plan", "PlannedContainer", "Subject", "decide", "plan"]


@dataclass(frozen=True, slots=True)
class Subject:
    """What is being admitted: the object's kind, name, namespace (with labels) and containers."""

    kind: str
    display_name: str
    """How messages name the object: ``namespace/name`` (``namespace/generateName*`` before it has a name)."""
    namespace: str
    namespace_labels: Mapping[str, str]
    containers: tuple[Container, ...]


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
class Decision:
    """The verdict and the findings behind it; `image_gate.core.messages` words them."""

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


def plan(subject: Subject, policies: Sequence[CompiledPolicy]) -> Plan:
    """Which policies cover which container, and which facts each image needs.

    Linear in the containers: a pod may carry thousands, mostly sharing a few
    images, so each distinct image string is parsed and matched against the
    policies once.
    """
    in_namespace = tuple(p for p in policies if p.covers_namespace(subject.namespace, subject.namespace_labels))
    planned: list[PlannedContainer] = []
    needs: dict[ImageReference, ImageNeeds] = {}
    seen: dict[str, tuple[ImageReference | InvalidImageReference, tuple[CompiledPolicy, ...]]] = {}
    for container in subject.containers:
        known = seen.get(container.image)
        if known is None:
            known = seen[container.image] = _plan_image(container.image, in_namespace, needs)
        image, covering = known
        planned.append(PlannedContainer(container, image, covering))
    return Plan(subject=subject, containers=tuple(planned), needs=needs)


def _plan_image(
    reference: str, in_namespace: tuple[CompiledPolicy, ...], needs: dict[ImageReference, ImageNeeds]
) -> tuple[ImageReference | InvalidImageReference, tuple[CompiledPolicy, ...]]:
    """One image string: what it is, the policies covering it, and (into ``needs``) the facts they need."""
    try:
        image = ImageReference.parse(reference)
    except InvalidImageReference as exc:
        return exc, in_namespace
    covering = tuple(p for p in in_namespace if p.covers_image(image))
    if covering:
        wanted = ImageNeeds(
            base_image=any(p.needs_base_image for p in covering),
            registry_digest=any(p.needs_registry_digest(image) for p in covering),
        )
        prior = needs.get(image)  # another string may name the same image ("nginx", "docker.io/library/nginx")
        needs[image] = wanted if prior is None else prior | wanted
    return image, covering


def decide(the_plan: Plan, facts: Mapping[ImageReference, ImageFacts]) -> Decision:
    """Judge every planned container under every policy covering it.

    The rules' results depend only on (image, policy, facts), so they are
    worked out once per distinct image and policy, however many containers
    share the image.
    """
    findings: list[Finding] = []
    judged: dict[tuple[int, int], list[_Result]] = {}
    for planned in the_plan.containers:
        for policy in planned.policies:
            key = (id(planned.image), id(policy))  # plan shares one image object per string; both outlive this
            results = judged.get(key)
            if results is None:
                results = judged[key] = _judge(planned.image, policy, facts)
            for rule, found, expected in results:  # mostly none: a loop, not a generator per pair
                findings.append(
                    Finding(
                        container=planned.container,
                        policy=policy.name,
                        mode=policy.mode,
                        on_unresolved=policy.on_unresolved,
                        rule=rule,
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


_Result = tuple[str, FoundValue, ExpectedValue | None]
"""A failed rule: its name, what was found, and what it expected (None: it could not be checked)."""


def _judge(
    image: ImageReference | InvalidImageReference,
    policy: CompiledPolicy,
    facts: Mapping[ImageReference, ImageFacts],
) -> list[_Result]:
    if isinstance(image, InvalidImageReference):
        return [("image", InvalidReference(image.reason), ValidReference())]
    known = facts.get(image)
    results: list[_Result] = []
    if policy.base_image is not None:
        results += _judge_base_image(policy.base_image, known.base_image if known else None)
    if policy.digest is not None:
        results += _judge_digest(policy.digest, image, known.registry_digest if known else None)
    return results


def _unresolved(rule: str, fact: FactName, outcome: NotFound | NotApplicable | Failure | None) -> _Result:
    return (rule, Unresolved(fact, outcome), None)


def _judge_base_image(rules: BaseImageRules, outcome: Outcome[BaseImage] | None) -> list[_Result]:
    if not isinstance(outcome, Found):
        return [_unresolved("baseImage", "base image", outcome)]
    base = outcome.value
    os_name, os_version = base.os_name, base.os_version
    results: list[_Result] = []
    if rules.allowed_os and not any(rule.matches(os_name, os_version) for rule in rules.allowed_os):
        results.append(("baseImage.allowedOS", OperatingSystem(os_name, os_version), AllowedOS(rules.allowed_os)))
    for rule in rules.denied_os:
        if rule.matches(os_name, os_version):
            results.append(("baseImage.deniedOS", OperatingSystem(os_name, os_version), NotOS(rule)))
    if rules.allowed_layer_digests and base.layer_digest not in rules.allowed_layer_digests:
        results.append(
            (
                "baseImage.allowedLayerDigests",
                BaseLayer(base.layer_digest, OperatingSystem(os_name, os_version)),
                ApprovedLayers(rules.allowed_layer_digests),
            )
        )
    return results


def _judge_digest(rules: DigestRules, image: ImageReference, outcome: Outcome[str] | None) -> list[_Result]:
    results: list[_Result] = []
    if rules.require_pinned and image.digest is None:
        results.append(("digest.requirePinned", Tag(image.tag), PinnedReference()))
    if rules.allowed:
        effective: Digest | None = None
        if image.digest is not None:
            effective = Digest(image.digest, "pinned")
        elif isinstance(outcome, Found):
            effective = Digest(outcome.value, "registry")
        else:
            results.append(_unresolved("digest.allowed", "registry digest", outcome))
        if effective is not None and effective.digest not in rules.allowed:
            results.append(("digest.allowed", effective, AllowedDigests(rules.allowed)))
    if rules.match_registry and image.digest is not None and image.tag is not None:
        if not isinstance(outcome, Found):
            results.append(_unresolved("digest.matchRegistry", "registry digest", outcome))
        elif outcome.value != image.digest:
            results.append(
                ("digest.matchRegistry", PinnedDigest(image.digest), RegistryDigest(outcome.value, image.tag))
            )
    return results
