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
from dataclasses import dataclass

from image_gate.core.images import ImageReference

__all__ = ["ImageGlob", "InvalidPattern", "LabelSelector"]


class InvalidPattern(ValueError):
    """Raised for an image glob or label selector that cannot be compiled."""


@dataclass(frozen=True, slots=True)
class ImageGlob:
    text: str
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, text: str) -> ImageGlob:
        if not isinstance(text, str) or not text.strip():
            raise InvalidPattern("an image pattern must be a non-empty string")
        if any(ch.isspace() for ch in text):
            raise InvalidPattern(f"image pattern {text!r} contains whitespace")
        parts: list[str] = []
        index = 0
        while index < len(text):
            if text.startswith("**", index):
                parts.append(".*")
                index += 2
            elif text[index] == "*":
                parts.append("[^/]*")
                index += 1
            elif text[index] == "?":
                parts.append("[^/]")
                index += 1
            else:
                parts.append(re.escape(text[index]))
                index += 1
        return cls(text=text, regex=re.compile("".join(parts)))

    def matches(self, image: ImageReference) -> bool:
        return bool(self.regex.fullmatch(image.normalized) or self.regex.fullmatch(image.name))


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
