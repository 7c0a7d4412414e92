"""
Time, injected.

Everything that computes a TTL, a deadline or a rate takes a `Clock` (and, when
it waits, a `Sleep`), so that tests drive time by hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Clock", "Deadline", "Sleep", "monotonic", "sleep"]

Clock = Callable[[], float]
"""Seconds on a monotonic scale; only differences matter."""

Sleep = Callable[[float], Awaitable[None]]

monotonic: Clock = time.monotonic
sleep: Sleep = asyncio.sleep


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point in time on a `Clock` by which some work must be done."""

    at: float
    clock: Clock = monotonic

    @classmethod
    def after(cls, seconds: float, clock: Clock = monotonic) -> Deadline:
        return cls(at=clock() + seconds, clock=clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self.clock())
