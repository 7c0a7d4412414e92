"""
Client-side quota: never send a cloud more calls than it allows.

HSS allows 5 calls per minute per user on each API. A token bucket would let a
burst of 5 through and then one every 12 s, which puts 9 calls into the first
minute; a gateway counting a sliding minute rejects the last four. So this is a
sliding log: a call may start once fewer than ``calls`` calls were counted in
the ``period`` before it, each counted when its answer came (the latest the
cloud can have counted it) or, while it is under way, when it started. Calls
reserve their slot when they ask, so waiting callers are served first come,
first served, and a cloud's ``Retry-After`` pushes every later slot back.

One `SlidingWindowLimiter` guards one (cloud, API, credential); `QuotaBook`
hands them out by that key.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass

from image_gate.core.clock import Clock, Sleep, monotonic, sleep

__all__ = ["QuotaBook", "QuotaExceeded", "QuotaSlot", "Rate", "SlidingWindowLimiter"]


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


class QuotaSlot:
    """One call's place in a limiter's window: when it started, then when its answer came.

    A gateway counts a call when it arrives, somewhere between our start and
    the answer. Until `settle`, the window counts the call at its start; after,
    at the answer, the latest the gateway can have counted it. Under load a
    call can take longer to arrive than the next one (a new connection's
    handshake against a reused one), and counting it at its start would let
    a later call into the gateway's window with it.
    """

    __slots__ = ("_clock", "at", "settled", "waited")

    def __init__(self, at: float, clock: Clock) -> None:
        self.at = at
        self.settled = False
        self.waited = 0.0
        """Seconds the caller waited for this slot."""
        self._clock = clock

    def settle(self) -> None:
        """The call is over (answered, failed or abandoned): count it from now on at the later of its start and now."""
        if not self.settled:
            self.at = max(self.at, self._clock())
            self.settled = True


class SlidingWindowLimiter:
    """At most ``rate.calls`` calls in any window of ``rate.period`` seconds.

    `take` reserves a slot (first come, first served) and returns it; the
    caller settles it (`QuotaSlot.settle`) when the answer came. A waiter checks again
    when its slot comes: if the calls before it answered later than they
    started, it waits the difference, so the window the gateway sees holds.
    `acquire` is `take` and `settle` at once (a gateway's own count, or a
    caller that does not know when its call arrives).
    """

    def __init__(self, rate: Rate, *, clock: Clock = monotonic, sleep: Sleep = sleep) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._slots: list[QuotaSlot] = []
        """Reserved, in flight, or settled within the last period; in the order they were taken."""
        self._blocked_until = 0.0
        self.waited = 0.0
        """Total seconds callers spent waiting here (for metrics)."""

    def next_slot(self, now: float | None = None) -> float:
        """When the next call could start, on the limiter's clock."""
        now = self._clock() if now is None else now
        return self._earliest(self._slots, now, now)

    def _earliest(self, ahead: list[QuotaSlot], floor: float, now: float) -> float:
        """The first moment from ``floor`` on at which a call after ``ahead`` keeps every window within the rate.

        A call under way is counted at ``now`` at the earliest: its answer, and
        perhaps its arrival, is still to come.
        """
        slot = max(floor, self._blocked_until)
        if len(ahead) >= self.rate.calls:
            counted = (s.at if s.settled or s.at > now else now for s in ahead)
            slot = max(slot, heapq.nlargest(self.rate.calls, counted)[-1] + self.rate.period)
        return slot

    async def take(self, *, max_wait: float | None = None) -> QuotaSlot:
        """Wait for a slot and take it; `QuotaSlot.settle` it when the call is over.

        With ``max_wait``, raise `QuotaExceeded` rather than wait longer, so a
        queue of lookups cannot grow without end behind a 5-per-minute quota.
        """
        now = self._clock()
        self._forget_before(now - self.rate.period)
        at = self._earliest(self._slots, now, now)  # one reading of the clock: a free slot waits exactly 0
        wait = at - now
        if max_wait is not None and wait > max_wait:
            raise QuotaExceeded(wait)
        slot = QuotaSlot(at, self._clock)
        self._slots.append(slot)  # reserve before waiting: later callers queue behind us
        try:
            while wait > 0:
                slot.waited += wait
                self.waited += wait
                await self._sleep(wait)
                # The calls ahead may have answered after they started: move back by what they took longer.
                required = self._earliest(self._slots[: self._slots.index(slot)], slot.at, self._clock())
                wait = required - slot.at
                if wait > 0 and max_wait is not None and slot.waited + wait > max_wait:
                    raise QuotaExceeded(wait)
                slot.at = required
        except BaseException:
            self._slots.remove(slot)  # never used: it counts for nobody
            raise
        return slot

    async def acquire(self, *, max_wait: float | None = None) -> float:
        """Wait for a slot, take it and count it at its start; return the seconds waited."""
        slot = await self.take(max_wait=max_wait)
        slot.settled = True
        return slot.waited

    def hold(self, seconds: float) -> None:
        """Start no call for ``seconds``: the cloud said so (Retry-After, TimeLeft)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

    def _forget_before(self, moment: float) -> None:
        """Drop the settled calls that no window from now on can hold."""
        self._slots = [slot for slot in self._slots if not slot.settled or slot.at > moment]


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
