"""
When the audit's next pass is due, apart from its timer: the changes that matter, told from those that do not.

Pure state with an injected clock (the watches feed it, the audit loop reads
it), so the rules are tested without an API server:

* a policy's new ``generation`` (created, or its spec changed) or its deletion
  makes a pass due; a status write (ours, or the controller's ``Ready``
  condition) leaves the generation alone and makes none, or the audit's own
  ``status.audit`` writes would start pass after pass;
* an ImageFact whose *outcome* changed makes a pass due when the last pass
  judged its image (``judged``): a tag re-pushed, HSS finishing a scan, a
  missing fact answered. A write that leaves the outcome as it was (a refresh
  that found the same, ``lastUsed``, a replica asking again) makes none;
* a pass is due ``debounce`` seconds after the first such change; changes
  meanwhile join it, so a burst makes one pass and the first change waits no
  longer than ``debounce``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from image_gate.core.clock import Clock
from image_gate.facts.records import StoredFact

__all__ = ["PassTriggers"]

_UNSEEN: Final = object()
_MAX_TRACKED_FACTS: Final = 200_000
"""Outcomes remembered at most (one small entry per ImageFact; the store caps them at 50,000 by default)."""


class PassTriggers:
    """Whether a pass is due because something it depends on changed, and why."""

    def __init__(self, *, debounce: float, clock: Clock, on_due: Callable[[], None] = lambda: None) -> None:
        self._debounce = debounce
        self._clock = clock
        self._on_due = on_due
        self.due: float | None = None
        """When the pass is due (on ``clock``); None when nothing changed since the last pass."""
        self.reason = ""
        self._generations: dict[str, object] = {}
        self._judged: frozenset[str] = frozenset()
        self._outcomes: dict[str, object] = {}
        """Each ImageFact's last outcome seen, as `_meaning` reads it (None: not answered yet)."""

    def poke(self, reason: str) -> None:
        """A pass is due ``debounce`` seconds from now, unless one is due already."""
        if self.due is not None:
            return
        self.due = self._clock() + self._debounce
        self.reason = reason
        self._on_due()

    def take(self) -> str | None:
        """The reason of a pass due now, which is then no longer due; None when none is."""
        if self.due is None or self.due > self._clock():
            return None
        self.due = None
        return self.reason

    def clear(self) -> None:
        """A pass starts anyway (leading began): what changed before is in it."""
        self.due = None

    def judged(self, references: frozenset[str]) -> None:
        """The normalised references of the images the last pass judged: their facts' changes matter."""
        self._judged = references

    def policy(self, event: str | None, name: str, generation: object) -> None:
        if event == "DELETED":
            self._generations.pop(name, None)
            self.poke(f"policy {name} deleted")
        elif self._generations.get(name, _UNSEEN) != generation:
            self._generations[name] = generation
            self.poke(f"policy {name} generation {generation}")

    def fact(self, stored: StoredFact) -> None:
        outcome = _meaning(stored)
        previous = self._outcomes.get(stored.name, _UNSEEN)
        if previous is _UNSEEN and len(self._outcomes) >= _MAX_TRACKED_FACTS:
            self._outcomes.clear()
        self._outcomes[stored.name] = outcome
        if previous is _UNSEEN and outcome is None:
            return  # just asked for: its answer is the change that matters
        if previous != outcome and stored.reference in self._judged:
            self.poke(f"fact {stored.name} changed")


def _meaning(stored: StoredFact) -> tuple[str, object] | None:
    """What a judgement can depend on: the outcome's kind and, when found, the value (not its request id,
    which every refresh changes); None when the fact is not answered yet."""
    record = stored.record
    if record is None:
        return None
    outcome = record.outcome
    return type(outcome).__name__, getattr(outcome, "value", None)
