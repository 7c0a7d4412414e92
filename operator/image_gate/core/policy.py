"""
ImageGatePolicy: from the custom resource's spec to a compiled, validated policy.

The CRD's schema already refuses most malformed policies at the API server;
this module checks what a schema cannot (version constraints, globs, digests,
selectors) and compiles everything once, so that admission only runs
precompiled matchers. A policy that does not compile is reported with every
problem and the field it is in; it never takes part in admission, and it never
stops the other policies from working.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from image_gate.core.images import ImageReference
from image_gate.core.osnames import os_key
from image_gate.core.patterns import ImageGlob, InvalidPattern, LabelSelector
from image_gate.core.versions import InvalidConstraint, VersionConstraint

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "BaseImageRules",
    "CompiledPolicy",
    "DigestRules",
    "Mode",
    "OSRule",
    "OnUnresolved",
    "PolicyError",
    "Severity",
    "compile_policy",
]

API_GROUP = "imagegate.io"
API_VERSION = "v1alpha1"
KIND = "ImageGatePolicy"

Mode = Literal["Enforce", "Warn", "Audit"]
OnUnresolved = Literal["Deny", "Allow"]
_MODES: tuple[Mode, ...] = ("Enforce", "Warn", "Audit")
_ON_UNRESOLVED: tuple[OnUnresolved, ...] = ("Deny", "Allow")
Severity = Literal["critical", "high", "medium", "low", "info"]
_SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
"""The values the policy WG's reports allow in ``results[].severity``, which is where ``spec.severity`` goes."""
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_SPEC_FIELDS = {"mode", "match", "baseImage", "digest", "onUnresolved", "description", "severity"}
_MATCH_FIELDS = {"namespaceSelector", "excludeNamespaces", "images", "excludeImages"}
_BASE_IMAGE_FIELDS = {"allowedOS", "deniedOS", "allowedLayerDigests"}
_DIGEST_FIELDS = {"requirePinned", "matchRegistry", "allowed"}


class PolicyError(ValueError):
    """Raised when a policy does not compile. ``problems`` lists each as "field: what is wrong"."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"policy {name!r} is invalid: " + "; ".join(problems))
        self.name = name
        self.problems = problems


@dataclass(frozen=True, slots=True)
class OSRule:
    """One entry of ``allowedOS`` / ``deniedOS``: an OS name and, optionally, versions."""

    name: str
    key: str
    versions: tuple[VersionConstraint, ...] = ()

    def matches(self, os_name: str, os_version: str) -> bool:
        if os_key(os_name) != self.key:
            return False
        return not self.versions or any(constraint.allows(os_version) for constraint in self.versions)

    def __str__(self) -> str:
        if not self.versions:
            return self.name
        return f"{self.name} {' or '.join(str(v) for v in self.versions)}"


@dataclass(frozen=True, slots=True)
class BaseImageRules:
    allowed_os: tuple[OSRule, ...] = ()
    denied_os: tuple[OSRule, ...] = ()
    allowed_layer_digests: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DigestRules:
    require_pinned: bool = False
    match_registry: bool = False
    allowed: frozenset[str] = frozenset()


_COVERED_MAX = 4096
"""How many images' `covers_image` answers a policy keeps (a few hundred KB at most)."""


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    name: str
    mode: Mode = "Enforce"
    on_unresolved: OnUnresolved = "Deny"
    generation: int | None = None
    namespace_selector: LabelSelector = field(default_factory=LabelSelector)
    exclude_namespaces: frozenset[str] = frozenset()
    images: tuple[ImageGlob, ...] = ()
    """Empty: every image."""
    exclude_images: tuple[ImageGlob, ...] = ()
    base_image: BaseImageRules | None = None
    digest: DigestRules | None = None
    severity: Severity | None = None
    """How much a violation matters, for policy reports only (None: not said); admission ignores it."""
    _covered: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)
    """`covers_image` answers by normalised reference: a cluster runs the same images over and over, and
    matching every glob again on every review was a sixth of a warm review's CPU. Bounded by `_COVERED_MAX`,
    so images an attacker invents cost one match each and no memory past the bound."""

    def covers_namespace(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if namespace in self.exclude_namespaces:
            return False
        return self.namespace_selector.matches(labels)

    def covers_image(self, image: ImageReference) -> bool:
        known = self._covered.get(image.normalized)
        if known is not None:
            return known
        covered = not any(glob.matches(image) for glob in self.exclude_images) and (
            not self.images or any(glob.matches(image) for glob in self.images)
        )
        if len(self._covered) >= _COVERED_MAX:
            self._covered.clear()
        self._covered[image.normalized] = covered
        return covered

    @property
    def needs_base_image(self) -> bool:
        return self.base_image is not None

    def needs_registry_digest(self, image: ImageReference) -> bool:
        """Whether judging ``image`` needs the registry's digest of its tag."""
        if self.digest is None or image.tag is None:
            return False
        if self.digest.match_registry and image.digest is not None:
            return True
        return bool(self.digest.allowed) and image.digest is None


def compile_policy(name: str, spec: object, *, generation: int | None = None) -> CompiledPolicy:
    """Compile a policy's ``spec``; raise `PolicyError` listing every problem found."""
    problems: list[str] = []
    if not isinstance(spec, Mapping):
        raise PolicyError(name, ["spec: must be a mapping"])
    _unknown_fields(spec, _SPEC_FIELDS, "spec", problems)

    mode = spec.get("mode", "Enforce")
    if mode not in _MODES:
        problems.append(f"spec.mode: must be one of {', '.join(_MODES)}, not {mode!r}")
    on_unresolved = spec.get("onUnresolved", "Deny")
    if on_unresolved not in _ON_UNRESOLVED:
        problems.append(f"spec.onUnresolved: must be Deny or Allow, not {on_unresolved!r}")
    severity = spec.get("severity")
    if severity is not None and severity not in _SEVERITIES:
        problems.append(f"spec.severity: must be one of {', '.join(_SEVERITIES)}, not {severity!r}")

    match = _mapping(spec.get("match"), "spec.match", problems)
    _unknown_fields(match, _MATCH_FIELDS, "spec.match", problems)
    selector = LabelSelector()
    try:
        selector = LabelSelector.compile(match.get("namespaceSelector"), where="spec.match.namespaceSelector")
    except InvalidPattern as exc:
        problems.append(str(exc))
    exclude_namespaces = _strings(match.get("excludeNamespaces"), "spec.match.excludeNamespaces", problems)
    images = _globs(match.get("images"), "spec.match.images", problems)
    exclude_images = _globs(match.get("excludeImages"), "spec.match.excludeImages", problems)

    base_image = _base_image_rules(spec.get("baseImage"), problems)
    digest = _digest_rules(spec.get("digest"), problems)
    if base_image is None and digest is None:
        problems.append("spec: a policy needs baseImage or digest rules (or both); this one checks nothing")

    if problems:
        raise PolicyError(name, problems)
    return CompiledPolicy(
        name=name,
        mode=mode,
        on_unresolved=on_unresolved,
        generation=generation,
        namespace_selector=selector,
        exclude_namespaces=frozenset(exclude_namespaces),
        images=tuple(images),
        exclude_images=tuple(exclude_images),
        base_image=base_image,
        digest=digest,
        severity=severity,
    )


def _section(value: object, where: str, fields: Iterable[str], problems: list[str]) -> Mapping[str, Any] | None:
    """An optional section of the spec: None when absent, else its fields, the unknown ones reported."""
    if value is None:
        return None
    rules = _mapping(value, where, problems)
    _unknown_fields(rules, fields, where, problems)
    return rules


def _base_image_rules(value: object, problems: list[str]) -> BaseImageRules | None:
    where = "spec.baseImage"
    rules = _section(value, where, _BASE_IMAGE_FIELDS, problems)
    if rules is None:
        return None
    allowed = _os_rules(rules.get("allowedOS"), f"{where}.allowedOS", problems)
    denied = _os_rules(rules.get("deniedOS"), f"{where}.deniedOS", problems)
    layers = _digests(rules.get("allowedLayerDigests"), f"{where}.allowedLayerDigests", problems)
    if not (allowed or denied or layers):
        problems.append(f"{where}: give allowedOS, deniedOS or allowedLayerDigests")
    return BaseImageRules(allowed_os=tuple(allowed), denied_os=tuple(denied), allowed_layer_digests=frozenset(layers))


def _digest_rules(value: object, problems: list[str]) -> DigestRules | None:
    where = "spec.digest"
    rules = _section(value, where, _DIGEST_FIELDS, problems)
    if rules is None:
        return None
    flags = {}
    for key in ("requirePinned", "matchRegistry"):
        flag = rules.get(key, False)
        if not isinstance(flag, bool):
            problems.append(f"{where}.{key}: must be true or false, not {flag!r}")
            flag = False
        flags[key] = flag
    allowed = _digests(rules.get("allowed"), f"{where}.allowed", problems)
    if not (flags["requirePinned"] or flags["matchRegistry"] or allowed):
        problems.append(f"{where}: set requirePinned, matchRegistry or allowed")
    return DigestRules(
        require_pinned=flags["requirePinned"], match_registry=flags["matchRegistry"], allowed=frozenset(allowed)
    )


def _os_rules(value: object, where: str, problems: list[str]) -> list[OSRule]:
    rules: list[OSRule] = []
    for index, item in enumerate(_list(value, where, problems)):
        here = f"{where}[{index}]"
        entry = _mapping(item, here, problems)
        _unknown_fields(entry, {"name", "versions"}, here, problems)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{here}.name: must be a non-empty string")
            continue
        constraints: list[VersionConstraint] = []
        for v_index, text in enumerate(_list(entry.get("versions"), f"{here}.versions", problems)):
            try:
                constraints.append(VersionConstraint.parse(str(text) if isinstance(text, int | float) else text))
            except InvalidConstraint as exc:
                problems.append(f"{here}.versions[{v_index}]: {exc}")
        rules.append(OSRule(name=name.strip(), key=os_key(name), versions=tuple(constraints)))
    return rules


def _digests(value: object, where: str, problems: list[str]) -> list[str]:
    digests = []
    for index, text in enumerate(_strings(value, where, problems)):
        if _DIGEST.match(text):
            digests.append(text)
        else:
            problems.append(f"{where}[{index}]: {text!r} is not a digest (sha256:<64 lowercase hex>)")
    return digests


def _globs(value: object, where: str, problems: list[str]) -> list[ImageGlob]:
    globs = []
    for index, text in enumerate(_strings(value, where, problems)):
        try:
            globs.append(ImageGlob.compile(text))
        except InvalidPattern as exc:
            problems.append(f"{where}[{index}]: {exc}")
    return globs


def _mapping(value: object, where: str, problems: list[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must be a mapping")
        return {}
    return value


def _list(value: object, where: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: must be a list")
        return []
    return value


def _strings(value: object, where: str, problems: list[str]) -> list[str]:
    items = _list(value, where, problems)
    strings = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            strings.append(item)
        else:
            problems.append(f"{where}[{index}]: must be a string")
    return strings


def _unknown_fields(value: Mapping[str, Any], known: Iterable[str], where: str, problems: list[str]) -> None:
    unknown = sorted(str(key) for key in value if key not in known)
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")
