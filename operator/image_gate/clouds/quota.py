"""
Client-side quota: never send a cloud more calls than it allows.

HSS allows 5 calls per minute per user on each API. A token bucket would let a
burst of 5 through and then one every 12 s, which puts 9 calls into the first
minute; a gateway counting a sliding minute rejects the last four. So this is a
sliding log: a call may start once fewer than ``calls`` calls started in the
``period`` before it. Calls reserve their slot when they ask, so waiting callers
are served first come, first served, and a cloud's ``Retry-After`` pushes every
later slot back.

One `SlidingWindowLimiter` guards one (cloud, API, credential); `QuotaBook`
hands them out by that key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from image_gate.core.clock import Clock, Sleep, monotonic, sleep

__all__ = ["QuotaBook", "QuotaExceeded", "Rate", "SlidingWindowLimiter"]


@dataclass(frozen=True, slots=True)
class Rate:
    """``calls`` per ``period`` seconds."""

    calls: int
    period: float

    def __post_init__(self) -> None:
        if self.calls < 1 or self.period <= 0:
            raise ValueError(f"a rate needs at least one call per positive period, not {self}")

    def __str__(self) -> str:
        return f"{self.calls}/{self.period:g}s"

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"5/60"`` or ``"5/60s"``: calls per seconds; raise `ValueError` with the expected form."""
        calls, sep, period = text.strip().partition("/")
        try:
            return cls(int(calls), float(period.strip().removesuffix("s")) if sep else 60.0)
        except ValueError:
            raise ValueError(f"{text!r} is not a rate; write calls/seconds, e.g. 5/60") from None


class QuotaExceeded(Exception):
    """Raised instead of waiting when the next free slot is further away than the caller will wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the client-side quota has no free slot for {wait:.1f}s")
        self.wait = wait


class SlidingWindowLimiter:
    """At most ``rate.calls`` starts in any window of ``rate.period`` seconds."""

    def __init__(self, rate: Rate, *, clock: Clock = monotonic, sleep: Sleep = sleep) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque(maxlen=rate.calls)
        self._blocked_until = 0.0
        self.waited = 0.0
        """Total seconds callers spent waiting here (for metrics)."""

    def next_slot(self, now: float | None = None) -> float:
        """When the next call could start, on the limiter's clock."""
        slot = max(self._clock() if now is None else now, self._blocked_until)
        if len(self._starts) == self.rate.calls:
            slot = max(slot, self._starts[0] + self.rate.period)
        return slot

    async def acquire(self, *, max_wait: float | None = None) -> float:
        """Wait for a slot and take it; return the seconds waited.

        With ``max_wait``, raise `QuotaExceeded` rather than wait longer, so a
        queue of lookups cannot grow without end behind a 5-per-minute quota.
        """
        now = self._clock()
        slot = self.next_slot(now)  # one reading of the clock: a free slot waits exactly 0
        wait = slot - now
        if max_wait is not None and wait > max_wait:
            raise QuotaExceeded(wait)
        self._starts.append(slot)  # reserve before waiting: later callers queue behind us
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)
        return max(0.0, wait)

    def hold(self, seconds: float) -> None:
        """Start no call for ``seconds``: the cloud said so (Retry-After, TimeLeft)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))


class QuotaBook:
    """One limiter per key, e.g. ``("huawei", "ListRegistryImages", access_key_fingerprint)``."""

    def __init__(self, *, clock: Clock = monotonic, sleep: Sleep = sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._limiters: dict[Hashable, SlidingWindowLimiter] = {}

    def limiter(self, key: Hashable, rate: Rate) -> SlidingWindowLimiter:
        limiter = self._limiters.get(key)
        if limiter is None or limiter.rate != rate:
            limiter = SlidingWindowLimiter(rate, clock=self._clock, sleep=self._sleep)
            self._limiters[key] = limiter
        return limiter
