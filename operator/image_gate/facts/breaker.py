"""
A circuit breaker per cloud: stop calling a service that keeps failing.

When HSS or SAS is down, every admission would otherwise spend its deadline
waiting for timeouts and retries, and keep a struggling service busy. After
``failure_threshold`` consecutive `Unavailable` / `TimedOut` outcomes the breaker
*opens*: calls fail at once with ``Unavailable("circuit open ...")``, which the
cache answers with a stale fact when it has one. After ``cool_down`` seconds it
is *half-open*: one call goes through as a probe (the others still fail fast);
its success closes the breaker, its failure opens it for another cool-down.

What counts:

* `Unavailable`, `TimedOut`: the service is failing; they count towards opening.
* `Throttled`: the service is up but says "not now" (or our own quota does); the
  quota limiter and retries handle it. It neither counts nor resets the count.
* Everything else (`Found`, `NotFound`, `Unauthorized`, `BadResponse`): the
  service answered, so it is up; the count starts again from zero. Wrong
  credentials are a configuration problem that an open circuit would only hide.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from image_gate.core.clock import Clock, monotonic
from image_gate.core.outcomes import Failure, Outcome, Throttled, TimedOut, Unavailable

__all__ = ["BreakerObserver", "BreakerSettings", "BreakerState", "CircuitBreaker", "NullBreakerObserver"]

T = TypeVar("T")

_TRIPPING = (Unavailable, TimedOut)
_NEUTRAL = (Throttled,)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    """Consecutive `Unavailable` / `TimedOut` outcomes that open the circuit."""
    cool_down: float = 30.0
    """Seconds the circuit stays open before one probe may go through."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {self.failure_threshold}")
        if self.cool_down <= 0:
            raise ValueError(f"cool_down must be positive, not {self.cool_down}")


class BreakerObserver(Protocol):
    def breaker_state(self, *, cloud: str, state: BreakerState) -> None:
        """The circuit of ``cloud`` changed state (a gauge, and a log line worth writing)."""

    def breaker_rejected(self, *, cloud: str, api: str) -> None:
        """A call failed fast because the circuit was open (or half-open with a probe in flight)."""


class NullBreakerObserver:
    def breaker_state(self, *, cloud: str, state: BreakerState) -> None:
        pass

    def breaker_rejected(self, *, cloud: str, api: str) -> None:
        pass


class CircuitBreaker:
    """The breaker of one cloud; every call to that cloud's APIs goes through `call`."""

    def __init__(
        self,
        cloud: str,
        settings: BreakerSettings = BreakerSettings(),
        *,
        clock: Clock = monotonic,
        observer: BreakerObserver | None = None,
    ) -> None:
        self.cloud = cloud
        self.settings = settings
        self._clock = clock
        self._observer: BreakerObserver = observer if observer is not None else NullBreakerObserver()
        self._failures = 0
        self._opened_until = 0.0
        self._state = BreakerState.CLOSED
        self._probing = False
        self._last_failure: Failure | None = None

    @property
    def state(self) -> BreakerState:
        """The state now: an open circuit whose cool-down has passed reads as half-open."""
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_until:
            return BreakerState.HALF_OPEN
        return self._state

    async def call(self, api: str, attempt: Callable[[], Awaitable[Outcome[T]]]) -> Outcome[T]:
        """Run ``attempt`` unless the circuit is open; learn from its outcome."""
        rejection = self._admit(api)
        if rejection is not None:
            self._observer.breaker_rejected(cloud=self.cloud, api=api)
            return rejection
        probe = self._state is BreakerState.HALF_OPEN
        try:
            outcome = await attempt()
        finally:
            if probe:
                # Released even when the probe is cancelled or raises, so that the next call may probe.
                self._probing = False
        self._record(outcome)
        return outcome

    def _admit(self, api: str) -> Unavailable | None:
        if self._state is BreakerState.CLOSED:
            return None
        now = self._clock()
        if self._state is BreakerState.OPEN:
            if now < self._opened_until:
                return self._reject(api, f"retrying in {self._opened_until - now:.0f}s")
            self._set_state(BreakerState.HALF_OPEN)
        if self._probing:
            return self._reject(api, "a probe is in flight")
        self._probing = True
        return None

    def _reject(self, api: str, when: str) -> Unavailable:
        last = f"; last failure: {self._last_failure.public_message}" if self._last_failure is not None else ""
        return Unavailable(
            cloud=self.cloud,
            api=api,
            detail=f"circuit open after {self._failures} consecutive failures, {when}{last}",
        )

    def _record(self, outcome: Outcome[T]) -> None:
        if isinstance(outcome, _NEUTRAL):
            return
        if isinstance(outcome, _TRIPPING):
            self._failures += 1
            self._last_failure = outcome
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.settings.failure_threshold:
                self._opened_until = self._clock() + self.settings.cool_down
                self._set_state(BreakerState.OPEN)
            return
        self._failures = 0
        self._last_failure = None
        self._set_state(BreakerState.CLOSED)

    def _set_state(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self._observer.breaker_state(cloud=self.cloud, state=state)
