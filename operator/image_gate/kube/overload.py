"""
Load shedding: past capacity, a review that could not be answered in time is refused at once.

An event loop past its capacity does not fail, it queues: every review in flight
shares the CPU, so each one's answer comes later, until reviews answer after the
API server stopped waiting (its ``timeoutSeconds``), which then applies the
webhook's failurePolicy to each of them anyway -- after seconds, and with the CPU
spent for nothing. `LoadShedder` refuses such a review as it arrives instead (the
server answers HTTP 429 with the reason): the API server applies failurePolicy at
once, and the reviews already admitted keep the CPU and finish in time.

The estimate is the queue ahead of a new review times what one review costs:

* the queue: reviews in flight, less those waiting for a cloud or the leader
  (``waiting``: a cold lookup uses no CPU while it waits, and is never cut short:
  it fills the cache for the retries);
* the cost: CPU seconds of this thread per finished review, measured over the
  last few dozen reviews (TLS, kopf and the refusals included: what it takes to
  empty the queue by one).

A review is refused when that wait exceeds ``share`` of its budget: the API
server's ``timeout`` for it (sent in the URL) or the configured deadline. Half by
default: the CPU is shared with other processes, so the wait can be longer than
the CPU estimate, and the review still needs its own time after the wait.
Only reviews are ever refused at the door; nothing admitted is cancelled.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from image_gate.core.clock import Clock, monotonic

__all__ = ["LoadShedder", "parse_timeout"]

_SAMPLE_REVIEWS = 32
"""Finished reviews per measurement of the cost of one."""
_SAMPLE_SECONDS = 1.0
"""A measurement spanning more than this is dropped: at a trickle, the CPU of the watches and the
idle loop would be charged to the few reviews, and then the cost matters little anyway."""
_SMOOTHING = 0.3
"""Weight of the newest measurement in the running estimate."""


@dataclass(kw_only=True, eq=False)
class LoadShedder:
    """Counts the reviews in flight, measures what one costs, and says which new ones to refuse."""

    default_budget: float
    """Seconds a review may take when the request names no ``timeout``: the configured deadline."""
    waiting: Callable[[], int] = lambda: 0
    """Reviews in flight that wait for facts (I/O, not CPU): `image_gate.core.admission.Admission.waiting`."""
    share: float = 0.5
    cpu_clock: Clock = time.thread_time
    clock: Clock = monotonic
    in_flight: int = field(default=0, init=False)
    seconds_per_review: float = field(default=0.0, init=False)
    """CPU seconds per finished review, smoothed; 0 until measured (nothing is refused before)."""
    _finished: int = field(default=0, init=False)
    _mark_cpu: float = field(default=0.0, init=False)
    _mark_wall: float = field(default=0.0, init=False)

    def refusal(self, budget: float | None) -> str | None:
        """Why a review arriving now would be answered too late; None when it is admitted."""
        queue = self.in_flight - self.waiting()
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
        if not self.in_flight and self.clock() - self._mark_wall > _SAMPLE_SECONDS:
            # Busy again after a pause: measure from here, not over the idle time and its background work.
            self._finished, self._mark_cpu, self._mark_wall = 0, self.cpu_clock(), self.clock()
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight -= 1
        self._finished += 1
        if self._finished < _SAMPLE_REVIEWS:
            return
        cpu, wall = self.cpu_clock(), self.clock()
        if wall - self._mark_wall <= _SAMPLE_SECONDS:
            measured = (cpu - self._mark_cpu) / self._finished
            self.seconds_per_review = (
                measured
                if not self.seconds_per_review
                else (1 - _SMOOTHING) * self.seconds_per_review + _SMOOTHING * measured
            )
        self._finished, self._mark_cpu, self._mark_wall = 0, cpu, wall


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|m|s|ms|us|µs|ns)")
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
