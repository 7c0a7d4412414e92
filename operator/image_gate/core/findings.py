"""
What a failed rule found and what it expected, as values.

A `Finding` is one rule that one container failed under one policy. Its
``found`` and ``expected`` are data (an OS name and version, a digest, the
approved digests, the lookup failure), never sentences: ``image-gate check
--output json`` and the review's log line carry them as they are, and
`image_gate.core.messages` is the one place that words them for people.

Each value type has ``as_dict`` (JSON-ready, with a ``type`` naming it); the
types are closed unions, so that the wording in `messages` can cover every one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Literal, TypeAlias

from image_gate.core.imagefacts import FactName, failure_fields
from image_gate.core.outcomes import Failure, NotApplicable, NotFound
from image_gate.core.policy import Mode, OnUnresolved, OSRule
from image_gate.core.workloads import Container

__all__ = [
    "AllowedDigests",
    "AllowedOS",
    "ApprovedLayers",
    "BaseLayer",
    "Digest",
    "ExpectedValue",
    "Finding",
    "FoundValue",
    "InvalidReference",
    "NotOS",
    "OperatingSystem",
    "PinnedDigest",
    "PinnedReference",
    "Problem",
    "RegistryDigest",
    "Tag",
    "Unresolved",
    "ValidReference",
]

Problem = Literal["violation", "unresolved"]


class _Fields:
    """A value whose ``as_dict`` is its ``kind`` and its fields, as they are."""

    __slots__ = ()
    kind: ClassVar[str]

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"type": self.kind}
        data.update((field.name, getattr(self, field.name)) for field in fields(self))  # type: ignore[arg-type]
        return data


# -- what was found


@dataclass(frozen=True, slots=True)
class OperatingSystem(_Fields):
    """The base image's OS, as HSS names it."""

    kind: ClassVar[str] = "os"
    problem: ClassVar[Problem] = "violation"
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class BaseLayer:
    """The base image's layer digest ("" when HSS reported none), and its OS."""

    problem: ClassVar[Problem] = "violation"
    digest: str
    os: OperatingSystem

    def as_dict(self) -> dict[str, object]:
        return {
            "type": "base_layer",
            "digest": self.digest or None,
            "os_name": self.os.name,
            "os_version": self.os.version,
        }


@dataclass(frozen=True, slots=True)
class Tag(_Fields):
    """The image is referenced by this tag, not by digest."""

    kind: ClassVar[str] = "tag"
    problem: ClassVar[Problem] = "violation"
    tag: str | None


@dataclass(frozen=True, slots=True)
class Digest(_Fields):
    """The image's digest: pinned in the reference, or the registry's for its tag."""

    kind: ClassVar[str] = "digest"
    problem: ClassVar[Problem] = "violation"
    digest: str
    source: Literal["pinned", "registry"]


@dataclass(frozen=True, slots=True)
class PinnedDigest(_Fields):
    """The digest pinned in the reference, where it differs from the registry's."""

    kind: ClassVar[str] = "pinned_digest"
    problem: ClassVar[Problem] = "violation"
    digest: str


@dataclass(frozen=True, slots=True)
class InvalidReference(_Fields):
    """The image string is not a valid reference; ``reason`` says what is wrong with it."""

    kind: ClassVar[str] = "invalid_reference"
    problem: ClassVar[Problem] = "violation"
    reason: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A fact the rule needs could not be had: the outcome in its place (None: nobody looked it up)."""

    problem: ClassVar[Problem] = "unresolved"
    fact: FactName
    outcome: NotFound | NotApplicable | Failure | None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"type": "unresolved", "fact": self.fact}
        outcome = self.outcome
        if outcome is None:
            data["outcome"] = "not looked up"
        elif isinstance(outcome, Failure):
            data.update(failure_fields(outcome))
        else:
            data["outcome"] = "not found" if isinstance(outcome, NotFound) else "not applicable"
            data["detail"] = outcome.detail
        return data


FoundValue: TypeAlias = OperatingSystem | BaseLayer | Tag | Digest | PinnedDigest | InvalidReference | Unresolved


# -- what the rule expected


def _os_rule(rule: OSRule) -> dict[str, object]:
    return {"name": rule.name, "versions": [str(version) for version in rule.versions]}


@dataclass(frozen=True, slots=True)
class AllowedOS:
    """``baseImage.allowedOS``: an OS matching one of these rules."""

    rules: tuple[OSRule, ...]

    def as_dict(self) -> dict[str, object]:
        return {"type": "allowed_os", "os": [_os_rule(rule) for rule in self.rules]}


@dataclass(frozen=True, slots=True)
class NotOS:
    """``baseImage.deniedOS``: an OS not matching this rule."""

    rule: OSRule

    def as_dict(self) -> dict[str, object]:
        return {"type": "not_os", "os": _os_rule(self.rule)}


@dataclass(frozen=True, slots=True)
class ApprovedLayers:
    """``baseImage.allowedLayerDigests``: a base layer among these."""

    digests: frozenset[str]

    def as_dict(self) -> dict[str, object]:
        return {"type": "approved_layers", "digests": sorted(self.digests)}


@dataclass(frozen=True, slots=True)
class PinnedReference(_Fields):
    """``digest.requirePinned``: a reference by digest."""

    kind: ClassVar[str] = "pinned_reference"


@dataclass(frozen=True, slots=True)
class AllowedDigests:
    """``digest.allowed``: one of these digests."""

    digests: frozenset[str]

    def as_dict(self) -> dict[str, object]:
        return {"type": "allowed_digests", "digests": sorted(self.digests)}


@dataclass(frozen=True, slots=True)
class RegistryDigest(_Fields):
    """``digest.matchRegistry``: the digest the registry has for the tag."""

    kind: ClassVar[str] = "registry_digest"
    digest: str
    tag: str


@dataclass(frozen=True, slots=True)
class ValidReference(_Fields):
    """Any policy covering the namespace: an image reference a node could pull."""

    kind: ClassVar[str] = "valid_reference"


ExpectedValue: TypeAlias = (
    AllowedOS | NotOS | ApprovedLayers | PinnedReference | AllowedDigests | RegistryDigest | ValidReference
)


# -- the finding


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule one container failed under one policy; its mode says what that does to the verdict."""

    container: Container
    policy: str
    mode: Mode
    on_unresolved: OnUnresolved
    rule: str
    found: FoundValue
    expected: ExpectedValue | None = None
    """None when the rule could not be checked (``found`` is then `Unresolved`)."""

    @property
    def problem(self) -> Problem:
        """``unresolved`` when a fact was missing, ``violation`` when the image broke the rule."""
        return self.found.problem

    @property
    def denies(self) -> bool:
        return self.mode == "Enforce" and (self.found.problem == "violation" or self.on_unresolved == "Deny")

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
            "found": self.found.as_dict(),
            "expected": self.expected.as_dict() if self.expected is not None else None,
            "denies": self.denies,
        }
