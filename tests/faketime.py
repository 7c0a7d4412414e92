"""
Time under the test's control, for code that takes a `Clock` and a `Sleep`.

``time.advance(30)`` moves the clock and wakes every sleeper that is due, in
order, letting what each wake-up starts run before time moves on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from image_gate.core.clock import Deadline

__all__ = ["WALL_START", "FakeTime", "settle", "time_fixture"]

WALL_START = 1_800_000_000.0
"""A wall-clock time (January 2027) for clocks whose readings are written as dates: Leases, ImageFacts."""


class FakeTime:
    """A clock and a sleep that only move when the test says so."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time in small steps, so that what one wake-up starts is woken at its own time."""
        end = self.now + seconds
        while True:
            await settle()
            due = [when for when, _, future in self._sleepers if not future.done() and when <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
        self.now = end
        await settle()

    def deadline(self, seconds: float) -> Deadline:
        return Deadline.after(seconds, self)


async def settle() -> None:
    """Let every runnable task run until it waits on something the test controls."""
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture(name="time")
def time_fixture() -> FakeTime:
    """A fake clock at `WALL_START`, for the unit modules of replicas, Leases and stored facts (tests/unit/conftest.py).

    A module whose clock starts elsewhere defines its own ``time`` fixture, which pytest prefers.
    """
    return FakeTime(start=WALL_START)
