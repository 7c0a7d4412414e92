"""
Load shedding: past capacity, a review that could not be answered in time is refused at once.

An event loop past its capacity does not fail, it queues: every review in flight
shares the CPU, so each one's answer comes later, until reviews answer after the
API server stopped waiting (its ``timeoutSeconds``), which then applies the
webhook's failurePolicy to each of them anyway -- after seconds, and with the CPU
spent for nothing. `LoadShedder` refuses such a review as it arrives instead (the
server answers HTTP 429 with the reason): the API server applies failurePolicy at
once, and the reviews already admitted keep the CPU and finish in time.

The estimate is the queue ahead of a new review times what one review takes:

* the queue: reviews in flight, less those waiting for a cloud or the leader
  (`Lookups.waiting`: a cold lookup uses no CPU while it waits, and is never cut
  short: it fills the cache for the retries);
* what one review takes: the CPU seconds of this thread per finished review (TLS,
  kopf and the refusals included: what it takes to empty the queue by one), times
  the slowdown, wall seconds per CPU second of this thread while it is busy (the
  cores are shared with other processes). Both are measured over each review that
  had the process to itself, and under load over windows of a quarter of a second
  or more in which the queue turned over and did not grow: reviews in flight share
  the CPU and finish together, so a window that ends while a burst is still in
  flight would charge all its CPU to the few that finished. Wall time is only
  measured where no review waited for a lookup.

A review is refused when that wait exceeds ``share`` of its budget: the API
server's ``timeout`` for it (sent in the URL) or the configured deadline. 40 % by
default: a burst costs more per review than a review alone (measured: up to
twice, with the garbage collector walking every review in flight), the refusals
themselves take CPU, and the review still needs its own time after the wait.
Only reviews are ever refused at the door; nothing admitted is cancelled.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from image_gate.core.clock import Clock, monotonic

__all__ = ["LoadShedder", "Lookups", "parse_timeout"]

_SAMPLE_REVIEWS = 8
"""Finished reviews, at least, per measurement under load."""
_SAMPLE_SECONDS = (0.25, 2.0)
"""How long a measurement under load spans: shorter ones are noise; longer ones are dropped (at a
trickle, the CPU of the watches would be charged to the few reviews; the reviews alone tell then)."""
_SMOOTHING = 0.3
"""Weight of the newest measurement in the running estimates."""
_MOST_SLOWDOWN = 4.0
"""A review alone that waited for something other than a lookup (a namespace's labels) is not the CPU's fault."""


class Lookups(Protocol):
    """How many reviews wait for facts now, and have so far: `image_gate.core.admission.Admission`."""

    @property
    def waiting(self) -> int: ...

    @property
    def waited(self) -> int: ...


@dataclass
class NoLookups:
    waiting: int = 0
    waited: int = 0


@dataclass(kw_only=True, eq=False)
class LoadShedder:
    """Counts the reviews in flight, measures what one takes, and says which new ones to refuse."""

    default_budget: float
    """Seconds a review may take when the request names no ``timeout``: the configured deadline."""
    lookups: Lookups = field(default_factory=NoLookups)
    share: float = 0.4
    cpu_clock: Clock = time.thread_time
    clock: Clock = monotonic
    in_flight: int = field(default=0, init=False)
    cpu_per_review: float = field(default=0.0, init=False)
    """CPU seconds per finished review, smoothed; 0 until measured (nothing is refused before)."""
    slowdown: float = field(default=1.0, init=False)
    """Wall seconds per CPU second of this thread while busy, smoothed; 1 until measured."""
    _finished: int = field(default=0, init=False)
    _mark: tuple[float, float, int, int] = field(default=(0.0, -1e9, 0, 0), init=False)
    """Where the measurement under load started: CPU clock, clock, reviews in flight, `Lookups.waited`."""
    _went_idle: bool = field(default=False, init=False)
    _alone_since: tuple[float, float, int] | None = field(default=None, init=False)
    """CPU clock, clock and `Lookups.waited` when the review now in flight started alone; None once others came."""

    @property
    def seconds_per_review(self) -> float:
        return self.cpu_per_review * self.slowdown

    def refusal(self, budget: float | None) -> str | None:
        """Why a review arriving now would be answered too late; None when it is admitted."""
        queue = self.in_flight - self.lookups.waiting
        wait = queue * self.seconds_per_review
        allowed = (budget if budget is not None else self.default_budget) * self.share
        if wait <= allowed:
            return None
        return (
            f"image-gate is over capacity: {queue} reviews are ahead of this one, about {wait:.1f}s of work, "
            f"more than the {allowed:.1f}s this review may wait; failing fast so the webhook's failurePolicy "
            "applies now instead of after the timeout\n"
        )

    def started(self) -> None:
        if self.in_flight:
            self._alone_since = None
        else:
            cpu, wall = self.cpu_clock(), self.clock()
            self._alone_since = (cpu, wall, self.lookups.waited)
            if wall - self._mark[1] > _SAMPLE_SECONDS[1]:
                # Busy again after a pause: measure from here, not over the idle time and its background work.
                self._start_window(cpu, wall)
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight -= 1
        self._finished += 1
        if not self.in_flight:
            self._went_idle = True
            if self._alone_since is not None:
                self._measured(self._alone_since, reviews=1)
                self._alone_since = None
        cpu_mark, wall_mark, in_flight_mark, _ = self._mark
        if self._finished < max(_SAMPLE_REVIEWS, in_flight_mark):
            return  # not every review in flight at the start has finished yet
        wall = self.clock()
        span = wall - wall_mark
        if span > _SAMPLE_SECONDS[1]:
            self._start_window(self.cpu_clock(), wall)
        elif span >= _SAMPLE_SECONDS[0] and self.in_flight <= 2 * in_flight_mark + _SAMPLE_REVIEWS:
            busy = not self._went_idle
            self._measured((cpu_mark, wall_mark, self._mark[3]), reviews=self._finished, busy=busy)
            self._start_window(self.cpu_clock(), wall)

    def _start_window(self, cpu: float, wall: float) -> None:
        self._finished, self._went_idle = 0, False
        self._mark = (cpu, wall, self.in_flight, self.lookups.waited)

    def _measured(self, since: tuple[float, float, int], *, reviews: int, busy: bool = True) -> None:
        cpu_since, wall_since, waited_since = since
        cpu = self.cpu_clock() - cpu_since
        self.cpu_per_review = _smoothed(self.cpu_per_review, cpu / reviews)
        if busy and cpu > 0 and self.lookups.waited == waited_since:
            slowdown = min(_MOST_SLOWDOWN, max(1.0, (self.clock() - wall_since) / cpu))
            self.slowdown = _smoothed(self.slowdown, slowdown)


def _smoothed(estimate: float, measured: float) -> float:
    return measured if not estimate else (1 - _SMOOTHING) * estimate + _SMOOTHING * measured


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_timeout(value: str | None) -> float | None:
    """The seconds of a Go duration (``10s``, ``1m30s``, ``500ms``), as the API server writes ``?timeout=``;
    None when absent or not one (the configured deadline applies)."""
    if not value or len(value) > 40:
        return None
    parts = _DURATION_PART.findall(value)
    if "".join(number + unit for number, unit in parts) != value:
        return None
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    return seconds if seconds > 0 else None
