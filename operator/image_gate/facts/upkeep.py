"""
The leader's upkeep of the stored facts: refresh what is used, delete what is not, keep a cap.

* **Refresh ahead.** A tag can be pushed again, so a fact about a tag expires
  after the tag TTL. Facts that reviews used lately are resolved again by the
  leader in the last ``refresh_ahead`` of their TTL (15 %), before they
  expire, so no review has to wait for them or be answered stale: queued in
  the fair queue's second tier under a group of their own (`REFRESH_GROUP`),
  below every namespace's miss, never more than a share of each cloud's
  quota (by default one HSS lookup a minute, a fifth of HSS's 5 calls a
  minute per API), and only while no miss waits. What the share cannot
  refresh in time expires and is refreshed later, soonest expiring first.
  The leader asks the cloud itself, past its in-process caches (the
  resolver's ``fresh``), so a stored fact is never older than its
  ``observedAt``. Facts about a digest never expire and are never refreshed.
* **Delete.** A fact nobody used for ``unused_after`` (30 days) is deleted:
  "used" is recorded by the replicas at most once a day per fact
  (``status.lastUsed``), never per review.
* **Cap.** Past ``max_facts`` (50,000) ImageFacts, replicas stop creating new
  ones (a miss is then resolved in-process, as when the store is down), the
  ``image_gate_fact_cap_reached`` gauge says so, and the leader posts a
  Warning Event; deleting unused facts brings the count back under.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from image_gate.core.clock import Clock, Sleep
from image_gate.core.outcomes import Found
from image_gate.facts.records import FactKey, FactRecord, StoredFact

__all__ = ["REFRESH_GROUP", "Upkeep", "UpkeepBackend", "UpkeepObserver", "UpkeepSettings"]

logger = logging.getLogger(__name__)

REFRESH_GROUP: Final = "(refresh)"
"""The fair queue's group for refreshes: one more turn-taker, never ahead of the namespaces."""
DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class UpkeepSettings:
    interval: float = 10.0
    refresh_ahead: float = 0.15
    """The last fraction of a tag fact's TTL in which it is refreshed, if used: a fact stored for 300 s is
    refreshed from 255 s on."""
    hss_refreshes_per_minute: float = 1.0
    acr_refreshes_per_minute: float = 12.0
    refresh_if_used_within: float = 2 * DAY
    """Only facts used this recently are refreshed (use is recorded daily); the rest expire and are asked
    for again when a review needs them."""
    unused_after: float = 30 * DAY
    sweep_every: float = 3_600.0
    max_facts: int = 50_000
    used_every: float = DAY
    """How often a replica records that a fact was used (one status write per fact and replica at most)."""

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.sweep_every <= 0 or self.unused_after <= 0 or self.used_every <= 0:
            raise ValueError("UpkeepSettings: intervals must be positive")
        if self.max_facts < 1:
            raise ValueError(f"UpkeepSettings.max_facts must be at least 1, not {self.max_facts}")
        if self.hss_refreshes_per_minute < 0 or self.acr_refreshes_per_minute < 0:
            raise ValueError("UpkeepSettings: refreshes per minute must not be negative")
        if not 0 < self.refresh_ahead < 1:
            raise ValueError(f"UpkeepSettings.refresh_ahead must be between 0 and 1, not {self.refresh_ahead}")

    def refresh_from(self, record: FactRecord) -> float | None:
        """When a used fact becomes due for a refresh (wall clock); None for facts that never expire."""
        if record.expires_at is None:
            return None
        return record.expires_at - self.refresh_ahead * max(0.0, record.expires_at - record.observed_at)


class UpkeepBackend(Protocol):
    def stored(self) -> Iterable[StoredFact]: ...

    async def delete(self, stored: StoredFact) -> bool:
        """Delete the ImageFact unless it changed since ``stored`` (resourceVersion precondition)."""

    async def warn(self, reason: str, message: str) -> None:
        """A Warning Event where operators look (the Lease); failures are logged, not raised."""


class UpkeepObserver(Protocol):
    def fact_cap(self, *, count: int, reached: bool) -> None:
        """How many ImageFacts there are, and whether the cap is reached."""

    def facts_deleted(self, *, count: int) -> None:
        """Unused facts deleted by a sweep."""


class Upkeep:
    """Runs in the leader only (`run` is cancelled when leadership ends)."""

    def __init__(
        self,
        backend: UpkeepBackend,
        settings: UpkeepSettings,
        *,
        refresh: Callable[[FactKey], bool],
        key_of: Callable[[StoredFact], FactKey | None],
        idle: Callable[[], bool],
        observer: UpkeepObserver,
        wall: Clock,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.settings = settings
        self._backend = backend
        self._refresh = refresh
        self._key_of = key_of
        self._idle = idle
        self._observer = observer
        self._wall = wall
        self._clock = clock
        self._sleep = sleep
        self._tokens = {"huawei": 0.0, "aliyun": 0.0}  # a new leader earns its first refresh like any other
        self._rates = {
            "huawei": settings.hss_refreshes_per_minute / 60.0,
            "aliyun": settings.acr_refreshes_per_minute / 60.0,
        }
        self._refilled_at = clock()
        self._next_sweep = clock()
        self._warned = False

    async def run(self) -> None:
        while True:
            await self.tick()
            await self._sleep(self.settings.interval)

    async def tick(self) -> None:
        self._refill()
        if self._idle():
            self.refresh_due()
        if self._clock() >= self._next_sweep:
            self._next_sweep = self._clock() + self.settings.sweep_every
            await self.sweep()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = now
        for cloud, rate in self._rates.items():
            self._tokens[cloud] = min(1.0, self._tokens[cloud] + elapsed * rate)

    def refresh_due(self) -> int:
        """Queue the recently used tag facts in (or past) their last stretch, as the quota share allows,
        soonest expiring first; a token is spent only on a fact actually queued (not queued already)."""
        now = self._wall()
        horizon = now - self.settings.refresh_if_used_within
        due: list[tuple[float, StoredFact]] = []
        for stored in self._backend.stored():
            record = stored.record
            if record is None or not isinstance(record.outcome, Found):
                continue
            start = self.settings.refresh_from(record)
            if start is not None and start <= now and (stored.used_since() or 0.0) >= horizon:
                due.append((record.expires_at or start, stored))
        due.sort(key=lambda pair: pair[0])
        queued = 0
        for _, stored in due:
            if self._tokens.get(stored.cloud, 0.0) < 1.0:
                continue
            key = self._key_of(stored)
            if key is None or not self._refresh(key):
                continue
            self._tokens[stored.cloud] -= 1.0
            queued += 1
        return queued

    async def sweep(self) -> None:
        """Delete unused facts; report the count against the cap (a Warning Event when reached)."""
        horizon = self._wall() - self.settings.unused_after
        facts = list(self._backend.stored())
        unused = [stored for stored in facts if (stored.used_since() or horizon) < horizon]
        deleted = 0
        for stored in unused:
            if await self._backend.delete(stored):
                deleted += 1
        if deleted:
            logger.info("deleted %d ImageFacts unused for %g days", deleted, self.settings.unused_after / DAY)
            self._observer.facts_deleted(count=deleted)
        count = len(facts) - deleted
        reached = count >= self.settings.max_facts
        self._observer.fact_cap(count=count, reached=reached)
        if reached and not self._warned:
            message = (
                f"{count} ImageFacts reach the cap of {self.settings.max_facts}: new images are resolved by each "
                "replica on its own until unused facts are deleted (raise the cap, or shorten the unused period)"
            )
            logger.warning(message)
            await self._backend.warn("ImageFactCapReached", message)
        self._warned = reached
