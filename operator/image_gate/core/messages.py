"""
Every sentence image-gate shows to people, built in one place.

Deny messages (what ``kubectl`` prints after "denied the request:"), admission
warnings, policy status conditions and ``image-gate check`` output all come
from here, so the wording stays consistent and tests can assert it word for
word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from image_gate.core.outcomes import BaseImage, Failure, Found, NotApplicable, NotFound, Outcome

if TYPE_CHECKING:
    from image_gate.core.evaluate import Finding

__all__ = [
    "deny_message",
    "describe_os",
    "describe_outcome",
    "finding_line",
    "policy_invalid_message",
    "policy_ready_message",
    "warning_message",
]

_MAX_DENY_LINES = 20
"""Kubernetes shows the whole message; past this many lines it stops being read."""


def describe_os(base: BaseImage) -> str:
    """The base OS as HSS named it: ``Debian GNU/Linux 12``."""
    return f"{base.os_name} {base.os_version}".strip()


def describe_outcome(outcome: Outcome[object] | None, *, fact: str) -> str:
    """Why a fact is missing, for a lookup-failure line."""
    if outcome is None:
        return f"the {fact} was not looked up"
    if isinstance(outcome, Failure):
        return outcome.message
    if isinstance(outcome, NotFound | NotApplicable):
        return outcome.detail
    if isinstance(outcome, Found):
        return f"the {fact} is {outcome.value}"
    raise TypeError(f"not an outcome: {outcome!r}")


def one_of(items: Iterable[object]) -> str:
    texts = [str(item) for item in items]
    if len(texts) == 1:
        return texts[0]
    return "one of " + ", ".join(texts)


def finding_line(finding: Finding) -> str:
    """One line about one container under one policy."""
    subject = f'container "{finding.container.name}" (image {finding.container.image})'
    if finding.problem == "violation":
        return (
            f'{subject}: policy "{finding.policy}" rule {finding.rule}: '
            f"found {finding.found}, expected {finding.expected}"
        )
    return (
        f'{subject}: policy "{finding.policy}" rule {finding.rule} could not be checked '
        f"(lookup failure, onUnresolved={finding.on_unresolved}): {finding.found}"
    )


def deny_message(kind: str, name: str, findings: Sequence[Finding]) -> str:
    """The message of a denied admission: every failing container, violations first."""
    ordered = sorted(findings, key=lambda f: (f.problem != "violation", f.container.name, f.policy, f.rule))
    violations = sum(1 for f in ordered if f.problem == "violation")
    failures = len(ordered) - violations
    counts = []
    if violations:
        counts.append(f"{violations} violation{'s' if violations != 1 else ''}")
    if failures:
        counts.append(f"{failures} lookup failure{'s' if failures != 1 else ''}")
    lines = [f"image-gate denied {kind} {name}: {' and '.join(counts)}"]
    lines += [f"- {finding_line(f)}" for f in ordered[:_MAX_DENY_LINES]]
    if len(ordered) > _MAX_DENY_LINES:
        lines.append(f"- ... and {len(ordered) - _MAX_DENY_LINES} more")
    return "\n".join(lines)


def warning_message(finding: Finding) -> str:
    """An admission warning (``kubectl`` prints it as ``Warning: ...``)."""
    if finding.mode == "Warn":
        prefix = f'image-gate (policy "{finding.policy}" in Warn mode)'
    else:
        prefix = f'image-gate (policy "{finding.policy}" allowed it: onUnresolved=Allow)'
    return f"{prefix}: {finding_line(finding)}"


def policy_ready_message(mode: str) -> str:
    return f"the policy is compiled and enforced in {mode} mode"


def policy_invalid_message(problems: Sequence[str]) -> str:
    return "the policy is ignored until fixed: " + "; ".join(problems)
