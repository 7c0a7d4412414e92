"""
Image globs and label selectors: the two ways a policy picks what it covers.

Image globs match the normalised reference (``nginx:1.27`` is
``docker.io/library/nginx:1.27``): ``*`` stays within one path segment, ``**``
crosses segments, ``?`` is one character. A glob also matches when it matches
the name alone, so ``docker.io/library/nginx`` covers every tag and digest of
nginx, and ``swr.*.myhuaweicloud.com/**`` covers everything in SWR.

Label selectors are Kubernetes' ``LabelSelector``: ``matchLabels`` and
``matchExpressions`` with ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from image_gate.core.images import ImageReference, canonical_host, looks_like_host

__all__ = ["ImageGlob", "InvalidPattern", "LabelSelector"]


class InvalidPattern(ValueError):
    """Raised for an image glob or label selector that cannot be compiled."""


@dataclass(frozen=True, slots=True)
class ImageGlob:
    """A compiled image glob: a bit-parallel NFA, linear in the image's length, whatever the glob.

    A regex translation (``**`` -> ``.*``) backtracks: ``**a**a**a**a**b``
    against a 228-character image took 7.8 s and blocked the event loop.
    Here bit ``i`` of the state says "the first ``i`` pieces matched the text
    read so far"; each character updates every state at once with a few integer
    operations, so a match costs O(len(image)) steps of O(len(glob) / 64) words
    and never backtracks.
    """

    text: str
    """The glob as the policy wrote it (for messages)."""
    canonical: str
    """The glob with its registry host canonical (`canonical_host`), as matched."""
    _literals: Mapping[str, int] = field(repr=False, compare=False)
    """Per character, the pieces that are that literal character."""
    _one: int = field(repr=False, compare=False)
    """``?`` pieces: one character other than ``/``."""
    _star: int = field(repr=False, compare=False)
    """``*`` pieces: any run of characters other than ``/``."""
    _double_star: int = field(repr=False, compare=False)
    """``**`` pieces: any run of characters."""
    _accept: int = field(repr=False, compare=False)

    @classmethod
    def compile(cls, text: str) -> ImageGlob:
        if not isinstance(text, str) or not text.strip():
            raise InvalidPattern("an image pattern must be a non-empty string")
        if any(ch.isspace() for ch in text):
            raise InvalidPattern(f"image pattern {text!r} contains whitespace")
        canonical = _canonical_glob(text)
        literals: dict[str, int] = {}
        one = star = double_star = 0
        count = 0
        for piece in _pieces(canonical):
            bit = 1 << count
            if piece == "**":
                double_star |= bit
            elif piece == "*":
                star |= bit
            elif piece == "?":
                one |= bit
            else:
                literals[piece] = literals.get(piece, 0) | bit
            count += 1
        return cls(text, canonical, literals, one, star, double_star, 1 << count)

    def matches(self, image: ImageReference) -> bool:
        """Whether the glob matches the normalised reference, or its name alone (``registry/repository``)."""
        # The name is a prefix of the normalised reference: one pass answers both.
        return self._run(image.normalized, stop_also_at=len(image.name))

    def _run(self, text: str, *, stop_also_at: int) -> bool:
        # Hot loop (every glob of every covering policy, every container): locals only, no calls but dict.get.
        literal = self._literals.get
        one, double_star, accept = self._one, self._double_star, self._accept
        stars = self._star | double_star
        # A star may match nothing: from "before a star" the state after it is reached too. `_pieces` never
        # yields two stars in a row, so one step is the whole closure.
        states = 1 | ((1 & stars) << 1)
        for position, char in enumerate(text, start=1):
            if char == "/":
                states = ((states & literal(char, 0)) << 1) | (states & double_star)
            else:
                states = ((states & (literal(char, 0) | one)) << 1) | (states & stars)
            states |= (states & stars) << 1
            if not states:
                return False
            if position == stop_also_at and states & accept:
                return True
        return bool(states & accept)


def _pieces(glob: str) -> list[str]:
    """The glob's characters, with each run of stars as one piece: ``*``, or ``**`` for two or more.

    ``***`` meant ``**`` then ``*`` (any text, then more text within a segment): that is any text, ``**``.
    """
    return ["**" if run.startswith("**") else run for run in _STAR_RUN_OR_CHARACTER.findall(glob)]


_STAR_RUN_OR_CHARACTER = re.compile(r"\*+|[^*]")


def _canonical_glob(glob: str) -> str:
    """The glob with its registry host as `canonical_host` writes hosts, so ``SWR.*.x.com/**`` is ``swr.*.x.com/**``.

    The first segment is rewritten when an image would read it as a host (a dot, a port, ``localhost``, upper
    case); ``*/**`` or ``**/app`` stay as written.
    """
    first, slash, rest = glob.partition("/")
    return f"{canonical_host(first)}/{rest}" if slash and looks_like_host(first) else glob


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[_Requirement, ...] = ()

    @classmethod
    def compile(cls, selector: object, *, where: str = "selector") -> LabelSelector:
        """Compile a LabelSelector mapping; an empty or absent selector matches everything."""
        if selector is None:
            return cls()
        if not isinstance(selector, Mapping):
            raise InvalidPattern(f"{where}: must be a mapping")
        requirements: list[_Requirement] = []
        match_labels = selector.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise InvalidPattern(f"{where}.matchLabels: must be a mapping of label to value")
        for key, value in match_labels.items():
            requirements.append(_Requirement(str(key), "In", frozenset({str(value)})))
        expressions = selector.get("matchExpressions") or []
        if not isinstance(expressions, list):
            raise InvalidPattern(f"{where}.matchExpressions: must be a list")
        for index, expression in enumerate(expressions):
            here = f"{where}.matchExpressions[{index}]"
            if not isinstance(expression, Mapping) or not expression.get("key"):
                raise InvalidPattern(f"{here}: needs a key and an operator")
            op = expression.get("operator")
            values = expression.get("values") or []
            if op not in _OPERATORS:
                raise InvalidPattern(f"{here}.operator: must be one of {', '.join(_OPERATORS)}, not {op!r}")
            if op in ("In", "NotIn") and not values:
                raise InvalidPattern(f"{here}.values: {op} needs at least one value")
            if op in ("Exists", "DoesNotExist") and values:
                raise InvalidPattern(f"{here}.values: {op} takes no values")
            requirements.append(_Requirement(str(expression["key"]), op, frozenset(str(v) for v in values)))
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)
