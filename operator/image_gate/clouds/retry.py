"""
Retries that stay inside the caller's deadline.

Only failures that may pass are retried: throttling (after the cloud's
``Retry-After`` when it gave one), unavailability and timeouts. Wrong
credentials and malformed answers are not: asking again gets the same answer
and, for credentials, may lock an account. A retry is attempted only when its
backoff still leaves time before the deadline; otherwise the last failure is
the outcome.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from image_gate.core.clock import Deadline, Sleep, sleep
from image_gate.core.outcomes import LookupFailed, Throttled, TimedOut, Unavailable

__all__ = ["RetryPolicy", "call_with_retries"]

T = TypeVar("T")
_RETRYABLE = (Throttled, Unavailable, TimedOut)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    """Total attempts, the first included."""
    base_delay: float = 0.2
    max_delay: float = 5.0

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Full-jitter exponential backoff (AWS architecture blog): spreads retries of many callers."""
        return rng() * min(self.max_delay, self.base_delay * 2.0**retry)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    deadline: Deadline,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Sleep = sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run ``attempt`` until it returns, or raises a `LookupFailed` not worth retrying."""
    retry = 0
    while True:
        try:
            return await attempt()
        except LookupFailed as exc:
            failure = exc.failure
            if not isinstance(failure, _RETRYABLE) or retry + 1 >= policy.attempts:
                raise
            delay = policy.backoff(retry, rng)
            if isinstance(failure, Throttled) and failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            if delay >= deadline.remaining():
                raise
            retry += 1
            await sleep(delay)
