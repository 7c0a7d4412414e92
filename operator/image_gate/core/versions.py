"""
OS versions and the constraints policies put on them.

Versions compare numerically segment by segment: "3.9" < "3.20",
"22.04" < "24.04", "7.9.2009" > "7". Missing segments count as zero, so
"12" == "12.0". Only the leading numeric part counts ("22.04.3 LTS" is
22.04.3); a version with no number at all ("bookworm/sid", "rolling") matches
only an exact, case-insensitive ``==`` constraint.

A constraint is one or more comparisons joined by commas, all of which must
hold: ``>=11``, ``<24``, ``==22.04``, ``!=7``, ``12.*`` (any 12.x), a bare
``22.04`` (equal), ``>=3.18,<4``. A list of constraints in a policy means "any
of them".
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["InvalidConstraint", "Version", "VersionConstraint"]

_NUMERIC_PREFIX = re.compile(r"^v?(\d+(?:\.\d+)*)")
_COMPARISON = re.compile(r"^(>=|<=|==|!=|>|<|=)?\s*([A-Za-z0-9][\w.+*-]*)$")
_OPERATORS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


class InvalidConstraint(ValueError):
    """Raised for a version constraint that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Version:
    text: str
    numbers: tuple[int, ...] | None
    """The numeric segments, or None when the version has no leading number."""

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _NUMERIC_PREFIX.match(text.strip())
        numbers = tuple(int(part) for part in match.group(1).split(".")) if match else None
        return cls(text=text.strip(), numbers=numbers)


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


@dataclass(frozen=True, slots=True)
class _Comparison:
    op: str
    target: str

    def holds(self, version: Version) -> bool:
        if self.target.endswith(".*"):
            prefix = Version.parse(self.target[:-2]).numbers or ()
            inside = version.numbers is not None and version.numbers[: len(prefix)] == prefix
            return inside if self.op == "==" else not inside
        wanted = Version.parse(self.target)
        if version.numbers is None or wanted.numbers is None:
            # Non-numeric versions are only ever equal (or unequal) as text.
            same = version.text.lower() == self.target.lower()
            return same if self.op == "==" else (not same if self.op == "!=" else False)
        left, right = _padded(version.numbers, wanted.numbers)
        return _OPERATORS[self.op](left, right)


@dataclass(frozen=True, slots=True)
class VersionConstraint:
    """A parsed constraint such as ``>=3.18,<4``."""

    text: str
    comparisons: tuple[_Comparison, ...]

    @classmethod
    def parse(cls, text: str) -> VersionConstraint:
        if not isinstance(text, str) or not text.strip():
            raise InvalidConstraint("a version constraint must be a non-empty string")
        comparisons = []
        for part in text.split(","):
            match = _COMPARISON.match(part.strip())
            if not match:
                raise InvalidConstraint(f"{text!r}: cannot read {part.strip()!r} (expected e.g. >=11, <24, 12.*)")
            op, target = match.group(1) or "==", match.group(2)
            op = "==" if op == "=" else op
            if target.endswith(".*") and op not in ("==", "!="):
                raise InvalidConstraint(f"{text!r}: a wildcard version like {target} takes no {op}")
            if op not in ("==", "!=") and Version.parse(target.removesuffix(".*")).numbers is None:
                raise InvalidConstraint(f"{text!r}: {op} needs a numeric version, not {target!r}")
            comparisons.append(_Comparison(op=op, target=target))
        return cls(text=text.strip(), comparisons=tuple(comparisons))

    def allows(self, version: str) -> bool:
        parsed = Version.parse(version)
        return all(comparison.holds(parsed) for comparison in self.comparisons)

    def __str__(self) -> str:
        return self.text
