"""
Every sentence image-gate shows to people, built in one place.

Deny messages (what ``kubectl`` prints after "denied the request:"), admission
warnings, policy status conditions and ``image-gate check`` output all come
from here, so the wording stays consistent and tests can assert it word for
word.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from image_gate.core import findings
from image_gate.core.findings import BaseLayer, ExpectedValue, Finding, FoundValue, OperatingSystem, Unresolved
from image_gate.core.imagefacts import FactName, StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Failure, Found, NotApplicable, NotFound, Outcome
from image_gate.core.workloads import Container

__all__ = [
    "audit_pass_line",
    "audit_skip_line",
    "audit_unstored_line",
    "deny_message",
    "describe_expected",
    "describe_found",
    "describe_outcome",
    "finding_line",
    "policy_invalid_message",
    "policy_ready_message",
    "stale_warning",
    "warning_message",
    "warning_messages",
]

_MAX_DENY_LINES = 20
"""Kubernetes shows the whole message; past this many lines it stops being read."""

_SOURCES: dict[FactName, str] = {"base image": "HSS", "registry digest": "SAS"}
"""Which cloud service each fact comes from, as people who run image-gate know them."""


def describe_outcome(outcome: Outcome[object] | None, *, fact: str) -> str:
    """Why a fact is missing, for a lookup-failure line."""
    if outcome is None:
        return f"the {fact} was not looked up"
    if isinstance(outcome, Failure):
        return outcome.public_message  # pod creators read this: no cloud identity (the log has it)
    if isinstance(outcome, NotFound | NotApplicable):
        return outcome.detail
    if isinstance(outcome, Found):
        return f"the {fact} is {outcome.value}"
    raise TypeError(f"not an outcome: {outcome!r}")


def _os(os: OperatingSystem) -> str:
    """The base OS as HSS named it: ``Debian GNU/Linux 12``."""
    return f"{os.name} {os.version}".strip()


def one_of(items: Iterable[object]) -> str:
    texts = [str(item) for item in items]
    if len(texts) == 1:
        return texts[0]
    return "one of " + ", ".join(texts)


def _base_layer(found: BaseLayer) -> str:
    return f"base layer {found.digest or '(none)'} ({_os(found.os)})"


def _unresolved(found: Unresolved) -> str:
    return describe_outcome(found.outcome, fact=found.fact)


# One entry per value type (a test holds them to the unions in `findings`); a dict rather than
# a chain of isinstance checks, because every warning and every line of a denial words two values.
_FOUND_WORDS: dict[type[object], Callable[[Any], str]] = {
    findings.OperatingSystem: _os,
    findings.BaseLayer: _base_layer,
    findings.Tag: lambda found: f"tag {found.tag}",
    findings.Digest: lambda found: str(found.digest),
    findings.PinnedDigest: lambda found: f"pinned {found.digest}",
    findings.InvalidReference: lambda found: str(found.reason),
    findings.Unresolved: _unresolved,
}
_EXPECTED_WORDS: dict[type[object], Callable[[Any], str]] = {
    findings.AllowedOS: lambda expected: one_of(expected.rules),
    findings.NotOS: lambda expected: f"not {expected.rule}",
    findings.ApprovedLayers: lambda expected: f"one of {len(expected.digests)} approved base layers",
    findings.PinnedReference: lambda expected: "a reference by digest (@sha256:...)",
    findings.AllowedDigests: lambda expected: f"one of {len(expected.digests)} allowed digests",
    findings.RegistryDigest: lambda expected: f"{expected.digest}, the registry's digest for tag {expected.tag}",
    findings.ValidReference: lambda expected: "a valid image reference",
}


def describe_found(found: FoundValue) -> str:
    """What a failed rule found, in words."""
    return _FOUND_WORDS[type(found)](found)


def describe_expected(expected: ExpectedValue) -> str:
    """What a failed rule expected, in words."""
    return _EXPECTED_WORDS[type(expected)](expected)


def _container(container: Container) -> str:
    return f'container "{container.name}" (image {container.image})'


def finding_line(finding: Finding) -> str:
    """One line about one container under one policy."""
    subject = _container(finding.container)
    found = describe_found(finding.found)
    if finding.expected is not None:
        return (
            f'{subject}: policy "{finding.policy}" rule {finding.rule}: '
            f"found {found}, expected {describe_expected(finding.expected)}"
        )
    return (
        f'{subject}: policy "{finding.policy}" rule {finding.rule} could not be checked '
        f"(lookup failure, onUnresolved={finding.on_unresolved}): {found}"
    )


def deny_message(kind: str, display_name: str, findings: Sequence[Finding]) -> str:
    """The message of a denied admission: every failing container, violations first."""
    violations = sum(1 for f in findings if f.problem == "violation")
    failures = len(findings) - violations
    counts = []
    if violations:
        counts.append(f"{violations} violation{'s' if violations != 1 else ''}")
    if failures:
        counts.append(f"{failures} lookup failure{'s' if failures != 1 else ''}")
    lines = [f"image-gate denied {kind} {display_name}: {' and '.join(counts)}"]
    # The first lines in order, without sorting them all: a pod may bring tens of thousands of findings.
    shown = heapq.nsmallest(
        _MAX_DENY_LINES, findings, key=lambda f: (f.problem != "violation", f.container.name, f.policy, f.rule)
    )
    lines += [f"- {finding_line(f)}" for f in shown]
    if len(findings) > _MAX_DENY_LINES:
        lines.append(f"- ... and {len(findings) - _MAX_DENY_LINES} more")
    return "\n".join(lines)


def audit_pass_line(container: Container, policy: str, rule: str) -> str:
    """A policy report's ``pass`` result: the container meets the rule."""
    return f'{_container(container)}: policy "{policy}" rule {rule} passed'


def audit_skip_line(container: Container, policy: str, rule: str, why: str) -> str:
    """A policy report's ``skip`` result: the rule does not apply to this reference, and ``why``."""
    return f'{_container(container)}: policy "{policy}" rule {rule} does not apply: {why}'


def audit_unstored_line(finding: Finding) -> str:
    """A policy report's ``error`` result for a fact the store does not hold (yet).

    The audit never calls a cloud; it asks the resolver for the fact and reports
    this until the fact is stored, when the result becomes ``pass`` or ``fail``.
    """
    fact = finding.found.fact if isinstance(finding.found, Unresolved) else "fact"
    return (
        f'{_container(finding.container)}: policy "{finding.policy}" rule {finding.rule} could not be checked yet: '
        f"image-gate has no stored {fact} of this image; the resolver was asked to look it up"
    )


def warning_message(finding: Finding) -> str:
    """An admission warning (``kubectl`` prints it as ``Warning: ...``)."""
    if finding.mode == "Warn":
        prefix = f'image-gate (policy "{finding.policy}" in Warn mode)'
    else:
        prefix = f'image-gate (policy "{finding.policy}" allowed it: onUnresolved=Allow)'
    return f"{prefix}: {finding_line(finding)}"


def warning_messages(findings: Iterable[Finding]) -> list[str]:
    """One admission warning per finding that warns (pass `Decision.warnings`)."""
    return [warning_message(finding) for finding in findings]


def stale_warning(image: ImageReference, stale: StaleFact) -> str:
    """An admission warning that a verdict stands on a fact older than its TTL, and why.

    ``image-gate judged image app:1 on facts from HSS 42 min old (its base image): huawei
    ListRegistryImages: unavailable: HTTP 503``
    """
    why = "; ".join(failure.public_message for failure in stale.because) or "the refresh did not finish"
    return (
        f"image-gate judged image {image} on facts from {_SOURCES[stale.fact]} {_age(stale.age)} old "
        f"(its {stale.fact}): {why}"
    )


def _age(seconds: float) -> str:
    """An age as people say it: ``40 s``, ``42 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def policy_ready_message(mode: str) -> str:
    return f"the policy is compiled and enforced in {mode} mode"


def policy_invalid_message(problems: Sequence[str]) -> str:
    return "the policy is ignored until fixed: " + "; ".join(problems)
