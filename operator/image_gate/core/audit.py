"""
The background audit: what already runs, judged against every Ready policy with stored facts.

Pure, like the rest of ``core``: the caller (the leader's audit loop, ``image-gate
audit``) reads the objects, the namespaces' labels and the stored facts; this
module only judges. It judges with the webhook's own evaluation
(`image_gate.core.evaluate.plan` and `decide`) and words results with
`image_gate.core.messages`, so a report says what a denial would say.

One `AuditResult` per object x container x policy rule that applies:

* ``pass``: the container meets the rule;
* ``fail``: it breaks the rule under an ``Enforce`` or ``Audit`` policy (an
  image string that is not a valid reference is one ``fail`` with rule
  ``image``, as the webhook words it);
* ``warn``: it breaks the rule under a ``Warn`` policy;
* ``error``: the rule could not be checked: the fact it needs is not stored
  yet (the image and that fact are then in `AuditPass.missing`, for the caller
  to queue for the resolver; the message says so; the rules of a fact that is
  stored are judged all the same), or the store holds a lookup that failed
  or found nothing (the message is the webhook's). An unresolved base image is
  one ``error`` with rule ``baseImage`` (the webhook's finding), not one per
  ``baseImage.*`` rule;
* ``skip``: the policy covers the image but the rule does not apply to its
  reference: ``digest.matchRegistry`` on a reference that pins no digest, or
  pins one without a tag (the webhook passes these silently).

A policy that does not cover the namespace or the image (``match``) gives no
result at all, as Kyverno and Gatekeeper report only what a policy matches.

Fast because a cluster runs few distinct images: the judgement of a container
(its name and image) under the policies covering its namespace is worked out
once and shared by every object that has the same container, so 5,000 pods of
a few hundred distinct containers cost a few hundred evaluations plus one
small object per result (``bench/bench_audit.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from image_gate.core import messages
from image_gate.core.evaluate import Subject, decide, plan
from image_gate.core.findings import Finding, Unresolved
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference, InvalidImageReference
from image_gate.core.policy import CompiledPolicy
from image_gate.core.workloads import POD_TEMPLATE_PATHS, Container, UnreadableObject, containers_of

__all__ = [
    "OWNED_KINDS",
    "AuditPass",
    "AuditResult",
    "AuditedObject",
    "KnownFacts",
    "ResultKind",
    "audit",
    "audited_object",
    "policy_rules",
]

ResultKind = Literal["pass", "fail", "warn", "error", "skip"]

OWNED_KINDS: Mapping[str, str] = {"ReplicaSet": "Deployment", "Job": "CronJob"}
"""Kinds audited through their controller when it is of the kind named here: the owner's template is
the same pod template, so judging both would report every container twice."""


@dataclass(frozen=True, slots=True)
class AuditedObject:
    """One running object as the audit reads it: a Pod, or a workload's pod template."""

    kind: str
    """``Pod``, ``Deployment``, ``StatefulSet``, ``DaemonSet``, ``ReplicaSet``, ``Job`` or ``CronJob``."""
    namespace: str
    name: str
    uid: str
    containers: tuple[Container, ...]
    """Every container (init, ephemeral, ...), as `image_gate.core.workloads.containers_of` reads them."""


def audited_object(kind: str, body: Mapping[str, Any]) -> AuditedObject | None:
    """The object as the audit judges it, or None when it is not judged on its own or is unreadable.

    None for what is audited through its owner (`OWNED_KINDS`: a ReplicaSet whose
    controller is a Deployment, a Job whose controller is a CronJob). Every Pod is
    audited, whoever owns it: a pod may run what its template no longer says; except
    a pod that has terminated for good (phase ``Succeeded`` or ``Failed``): nothing
    runs it again (a Job or CronJob that would is audited itself), and asking HSS
    about its images would spend the quota on what no node will pull. Raises
    nothing on garbage: an unreadable object gives None (the caller logs it).
    """
    if not isinstance(body, Mapping) or kind not in POD_TEMPLATE_PATHS:
        return None
    if kind == "Pod" and _terminated(body.get("status")):
        return None
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    name, namespace, uid = metadata.get("name"), metadata.get("namespace"), metadata.get("uid", "")
    if not (isinstance(name, str) and name and isinstance(namespace, str) and namespace and isinstance(uid, str)):
        return None
    owner_kind = OWNED_KINDS.get(kind)
    if owner_kind is not None and _controlled_by(metadata.get("ownerReferences"), owner_kind):
        return None
    try:
        containers = containers_of(kind, body)
    except UnreadableObject:
        return None
    return AuditedObject(kind=kind, namespace=namespace, name=name, uid=uid, containers=tuple(containers))


_TERMINAL_PHASES: frozenset[object] = frozenset({"Succeeded", "Failed"})


def _terminated(status: object) -> bool:
    return isinstance(status, Mapping) and status.get("phase") in _TERMINAL_PHASES


def _controlled_by(references: object, owner_kind: str) -> bool:
    if not isinstance(references, list):
        return False
    return any(
        isinstance(ref, Mapping) and ref.get("controller") is True and ref.get("kind") == owner_kind
        for ref in references
    )


class KnownFacts(Protocol):
    """Where the audit reads facts: what the store holds, never a cloud call."""

    def known(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        """The stored facts of ``image``; None when one it needs is not stored yet (or expired past use)."""
        ...


@dataclass(frozen=True, slots=True)
class AuditResult:
    """One object x container x policy rule."""

    namespace: str
    kind: str
    name: str
    uid: str
    container: str
    image: str
    """The image exactly as written in the object."""
    policy: str
    rule: str
    result: ResultKind
    message: str
    """The line a denial would show for this container and rule (for ``pass``/``skip``: the same shape)."""
    found: str
    """What the rule found, in words; "" when it passed or did not apply."""
    expected: str
    """What the rule expected, in words; "" when it passed, did not apply, or could not be checked."""
    severity: str | None
    """The policy's ``spec.severity``; None when it gives none."""


@dataclass(frozen=True, slots=True)
class AuditPass:
    """Every result of one pass, and what the pass could not judge for want of a stored fact."""

    results: tuple[AuditResult, ...]
    missing: frozenset[tuple[ImageReference, bool, bool]]
    """``(image, base_image, digest)`` whose facts are not stored: the caller asks the resolver for them.
    One fact per entry (``base_image`` or ``digest``, not both), so that only what is missing is asked for."""
    policies: tuple[str, ...]
    """The policies judged (sorted): a report holds results of these only."""


def policy_rules(policy: CompiledPolicy) -> tuple[str, ...]:
    """The rules a policy sets, by the names findings give them (``baseImage.allowedOS``, ...)."""
    candidates: list[tuple[str, object]] = []
    if policy.base_image is not None:
        base = policy.base_image
        candidates += [
            ("baseImage.allowedOS", base.allowed_os),
            ("baseImage.deniedOS", base.denied_os),
            ("baseImage.allowedLayerDigests", base.allowed_layer_digests),
        ]
    if policy.digest is not None:
        digest = policy.digest
        candidates += [
            ("digest.requirePinned", digest.require_pinned),
            ("digest.allowed", digest.allowed),
            ("digest.matchRegistry", digest.match_registry),
        ]
    return tuple(rule for rule, given in candidates if given)


def audit(
    objects: Iterable[AuditedObject],
    policies: Sequence[CompiledPolicy],
    namespace_labels: Callable[[str], Mapping[str, str]],
    facts: KnownFacts,
) -> AuditPass:
    """Judge every object's containers under every policy; ``namespace_labels`` is asked once per namespace."""
    judge = _Judge(facts)
    namespaces: dict[str, _Namespace] = {}
    results: list[AuditResult] = []
    for obj in objects:
        namespace = namespaces.get(obj.namespace)
        if namespace is None:
            namespace = namespaces[obj.namespace] = _Namespace.of(obj.namespace, namespace_labels, policies)
        if not namespace.policies:
            continue
        for container in obj.containers:
            for line in judge.container(container, namespace):
                results.append(AuditResult(obj.namespace, obj.kind, obj.name, obj.uid, *line))
    return AuditPass(
        results=tuple(results),
        missing=frozenset(judge.missing),
        policies=tuple(sorted({p.name for p in policies})),
    )


_Line = tuple[str, str, str, str, ResultKind, str, str, str, str | None]
"""An `AuditResult` without its object: container, image, policy, rule, result, message, found, expected,
severity. What every object with the same container under the same policies shares."""


@dataclass(frozen=True, slots=True)
class _Namespace:
    """A namespace as the pass sees it: its labels and the policies covering it."""

    name: str
    labels: Mapping[str, str]
    policies: tuple[CompiledPolicy, ...]
    key: tuple[int, ...]
    """Which policies: namespaces covered by the same ones share the judgements of their containers."""

    @classmethod
    def of(
        cls, name: str, namespace_labels: Callable[[str], Mapping[str, str]], policies: Sequence[CompiledPolicy]
    ) -> _Namespace:
        labels = namespace_labels(name)
        covering = tuple(p for p in policies if p.covers_namespace(name, labels))
        return cls(name, labels, covering, tuple(id(p) for p in covering))  # the policies outlive the pass


class _Judge:
    """Judgements of containers, remembered for the pass: by container and the policies covering it."""

    def __init__(self, facts: KnownFacts) -> None:
        self._facts = facts
        self._lines: dict[tuple[Container, tuple[int, ...]], tuple[_Line, ...]] = {}
        self._known: dict[tuple[ImageReference, bool, bool], ImageFacts | None] = {}
        self.missing: set[tuple[ImageReference, bool, bool]] = set()

    def container(self, container: Container, namespace: _Namespace) -> tuple[_Line, ...]:
        """The results of ``container`` under the policies covering ``namespace``, judged once per pass."""
        key = (container, namespace.key)
        lines = self._lines.get(key)
        if lines is None:
            lines = self._lines[key] = self._judge(container, namespace.name, namespace.labels, namespace.policies)
        return lines

    def _judge(
        self,
        container: Container,
        namespace: str,
        labels: Mapping[str, str],
        policies: tuple[CompiledPolicy, ...],
    ) -> tuple[_Line, ...]:
        # ``policies`` cover this namespace; plan checks that again (cheap, once per distinct container).
        the_plan = plan(Subject("Pod", "", namespace, labels, (container,)), policies)
        facts: dict[ImageReference, ImageFacts] = {}
        for image, needs in the_plan.needs.items():
            if not (needs.base_image or needs.registry_digest):
                continue
            known = self._stored(image, needs.base_image, needs.registry_digest)
            if known is not None:
                facts[image] = known
        decision = decide(the_plan, facts)
        (planned,) = the_plan.containers
        lines: list[_Line] = []
        for policy in planned.policies:
            found = [f for f in decision.findings if f.policy == policy.name]
            lines += _lines(container, planned.image, policy, found)
        return tuple(lines)

    def _stored(self, image: ImageReference, base_image: bool, digest: bool) -> ImageFacts | None:
        """The stored facts of ``image``, as many as are stored: a fact missing leaves only its rules unjudged."""
        both = self._one(image, base_image, digest)
        if both is not None or not (base_image and digest):
            return both
        # `KnownFacts.known` answers None when either is missing: ask for each, so the one stored is judged.
        base, registry = self._one(image, True, False), self._one(image, False, True)
        if base is None and registry is None:
            return None
        return ImageFacts(
            base_image=base.base_image if base is not None else None,
            registry_digest=registry.registry_digest if registry is not None else None,
            stale=(base.stale if base is not None else ()) + (registry.stale if registry is not None else ()),
            hss_image_id=base.hss_image_id if base is not None else None,
        )

    def _one(self, image: ImageReference, base_image: bool, digest: bool) -> ImageFacts | None:
        key = (image, base_image, digest)
        if key in self._known:
            return self._known[key]
        known = self._known[key] = self._facts.known(image, base_image=base_image, digest=digest)
        if known is None and not (base_image and digest):
            self.missing.add(key)  # one fact each, so the caller asks for exactly what is missing
        return known


def _lines(
    container: Container,
    image: ImageReference | InvalidImageReference,
    policy: CompiledPolicy,
    findings: list[Finding],
) -> list[_Line]:
    """The results of one container under one policy covering it, from the webhook's findings."""

    def line(rule: str, result: ResultKind, message: str, found: str = "", expected: str = "") -> _Line:
        return (container.name, container.image, policy.name, rule, result, message, found, expected, policy.severity)

    if isinstance(image, InvalidImageReference):
        return [_finding_line(line, findings)] if findings else []
    by_rule: dict[str, list[Finding]] = {}
    for finding in findings:
        by_rule.setdefault(finding.rule, []).append(finding)
    lines: list[_Line] = []
    unresolved_base = by_rule.pop("baseImage", None)
    if unresolved_base:
        lines.append(_finding_line(line, unresolved_base))
    for rule in policy_rules(policy):
        if unresolved_base and rule.startswith("baseImage."):
            continue
        failed = by_rule.get(rule)
        if failed:
            lines.append(_finding_line(line, failed))
            continue
        why = _not_applicable(rule, image)
        if why is not None:
            lines.append(line(rule, "skip", messages.audit_skip_line(container, policy.name, rule, why)))
        else:
            lines.append(line(rule, "pass", messages.audit_pass_line(container, policy.name, rule)))
    return lines


def _finding_line(line: Callable[..., _Line], findings: list[Finding]) -> _Line:
    """One result from the findings of one rule (more than one: several deniedOS entries matched)."""
    first = findings[0]
    found = first.found
    if isinstance(found, Unresolved):
        if found.outcome is None:  # not in the store: the caller asks the resolver
            return line(first.rule, "error", messages.audit_unstored_line(first), f"no stored {found.fact}")
        return line(first.rule, "error", _joined(findings), messages.describe_found(found))
    result: ResultKind = "warn" if first.mode == "Warn" else "fail"
    expected = messages.describe_expected(first.expected) if first.expected is not None else ""
    return line(first.rule, result, _joined(findings), messages.describe_found(found), expected)


def _joined(findings: list[Finding]) -> str:
    return "\n".join(messages.finding_line(f) for f in findings)


def _not_applicable(rule: str, image: ImageReference) -> str | None:
    """Why ``rule`` does not apply to ``image``'s reference; None when it does."""
    if rule == "digest.matchRegistry":
        if image.digest is None:
            return "the reference pins no digest to compare with the registry's"
        if image.tag is None:
            return "the reference names no tag whose registry digest it could be compared with"
    return None
