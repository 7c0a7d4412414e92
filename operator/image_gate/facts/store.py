"""
What `SharedFacts` needs from outside, and how it is tuned: the contract with the cluster's ImageFacts.

`FactStoreBackend` (the index and the writes; ``image_gate.kube.factstore`` implements it on the
API server), the `StoreUnavailable` it raises when a write is refused, the `SharedFactsObserver`
that turns the store's work into metrics, `StoreSettings`, and `REQUESTING_NAMESPACE`, which the
webhook sets per review. Kept apart from ``facts.shared`` so that the backends and the wiring can
name the contract without the replica's resolving logic.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from image_gate.core.cloudnames import HUAWEI
from image_gate.core.outcomes import Found, NotApplicable, NotFound, Outcome, Throttled
from image_gate.facts.records import FactKey, FactRecord, StoredFact
from image_gate.facts.resolver import CacheSettings
from image_gate.facts.upkeep import REFRESH_GROUP, UpkeepSettings

__all__ = [
    "PREFETCH_GROUPS",
    "QUEUE_TIERS",
    "REQUESTING_NAMESPACE",
    "FactStoreBackend",
    "NullSharedFactsObserver",
    "Priority",
    "SharedFactsObserver",
    "StoreSettings",
    "StoreUnavailable",
    "WriteResult",
    "queue_tier",
]

REQUESTING_NAMESPACE: contextvars.ContextVar[str] = contextvars.ContextVar("image_gate_namespace", default="")
"""The namespace of the review being judged; the webhook sets it, the fair queue reads it."""

WriteResult = Literal["written", "unchanged", "conflict"]

Priority = Literal["running", "inventory"]
"""How urgent a fact asked for ahead of need is: images of running workloads before the registry's inventory."""

PREFETCH_GROUPS: Final[dict[Priority, str]] = {"running": "(running)", "inventory": "(inventory)"}
"""The leader's queue groups (and an ImageFact's ``requested-by``) of facts asked for ahead of need.

Not namespace names (those never hold parentheses), so a replica that asks ahead of need says so in the
annotation, and the leader queues it below admission misses whoever created the ImageFact."""

QUEUE_TIERS: Final = 3
_LATER_TIERS: Final[dict[str, int]] = {REFRESH_GROUP: 1, PREFETCH_GROUPS["running"]: 1, PREFETCH_GROUPS["inventory"]: 2}


def queue_tier(group: str) -> int:
    """The leader's queue tier for ``group``: 0 for a namespace's admission miss (the most urgent); then
    refreshes ahead of expiry and running workloads' images (1); then the inventory (2)."""
    return _LATER_TIERS.get(group, 0)


class StoreUnavailable(Exception):
    """The ImageFact could not be written: no permission, or no API server. The replica degrades."""


class FactStoreBackend(Protocol):
    """The ImageFacts: an index read in memory, and the two writes."""

    def lookup(self, name: str) -> StoredFact | None:
        """The ImageFact of that name as the watch last delivered it; a dict read."""

    def stored(self) -> Iterable[StoredFact]:
        """Every ImageFact known (a new leader looks for pending ones)."""

    async def request(self, key: FactKey, *, namespace: str, existing: StoredFact | None) -> None:
        """Ask for ``key``: create its ImageFact, or mark an existing one requested again; `StoreUnavailable`."""

    async def write(self, key: FactKey, record: FactRecord, *, previous: StoredFact | None) -> WriteResult:
        """Write ``record`` as the status, guarded by ``previous``'s resourceVersion; `StoreUnavailable`."""

    def count(self) -> int:
        """How many ImageFacts there are (from the index)."""

    async def mark_used(self, name: str, at: float) -> None:
        """Record ``status.lastUsed``; `StoreUnavailable`."""

    async def delete(self, stored: StoredFact) -> bool:
        """Delete the ImageFact unless it changed since ``stored``; True if it was deleted."""

    async def warn(self, reason: str, message: str) -> None:
        """A Warning Event where operators look; failures are logged, not raised."""


class SharedFactsObserver(Protocol):
    def store_write(self, *, result: str) -> None:
        """A status write by the leader: ``written``, ``unchanged`` (skipped), ``conflict`` or ``failed``."""

    def miss_waited(self, *, outcome: str, seconds: float) -> None:
        """A review waited for the leader's answer: its state (``Found``, ...) or ``timed out``."""

    def store_degraded(self, *, reason: str) -> None:
        """The store could not be written; facts are resolved in-process for a while."""

    def pending_by_namespace(self, counts: Mapping[str, int]) -> None:
        """The leader's queue, by namespace: only namespaces with lookups waiting.

        A namespace absent from ``counts`` has none; its series goes, so that the
        metric does not keep every namespace (or every name a flood made up) forever.
        """

    def fact_cap(self, *, count: int, reached: bool) -> None:
        """How many ImageFacts there are, and whether the cap is reached (new ones are not created)."""

    def facts_deleted(self, *, count: int) -> None:
        """Unused facts deleted by the leader."""

    def fact_resolved(self, *, cloud: str, ahead: bool) -> None:
        """The leader resolved a fact: ``ahead`` of need (refresh, running workloads, inventory) or for an
        admission miss."""


class NullSharedFactsObserver:
    def store_write(self, *, result: str) -> None:
        pass

    def miss_waited(self, *, outcome: str, seconds: float) -> None:
        pass

    def store_degraded(self, *, reason: str) -> None:
        pass

    def pending_by_namespace(self, counts: Mapping[str, int]) -> None:
        pass

    def fact_cap(self, *, count: int, reached: bool) -> None:
        pass

    def facts_deleted(self, *, count: int) -> None:
        pass

    def fact_resolved(self, *, cloud: str, ahead: bool) -> None:
        pass


_CACHE = CacheSettings()
"""The in-process cache's defaults: a stored fact holds as long as a cached one (one home for each TTL)."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How long stored facts hold, and how the leader works through what is pending."""

    tag_ttl: float = _CACHE.tag_ttl
    negative_ttl: float = _CACHE.negative_ttl
    max_stale: float = _CACHE.max_stale
    failure_ttl: float = 30.0
    """A failure (throttled, unavailable, ...) answers repeats for this long, or the cloud's Retry-After."""
    lookup_budget: float = _CACHE.lookup_budget
    workers: int = 2
    """Lookups the leader runs at once: few, so that the fair queue, not the cloud's limiter, decides the order."""
    max_pending: int = 10_000
    degraded_for: float = 30.0
    """After a failed write, facts are resolved in-process this long before the store is tried again."""
    hss_quota_window: float = 63.0
    """HSS's quota period with the client's safety margin: a new leader waits this long after its predecessor's
    last call on each HSS API."""
    upkeep: UpkeepSettings = field(default_factory=UpkeepSettings)

    def __post_init__(self) -> None:
        for name in ("tag_ttl", "negative_ttl", "max_stale", "failure_ttl", "lookup_budget", "degraded_for"):
            if getattr(self, name) <= 0:
                raise ValueError(f"StoreSettings.{name} must be positive, not {getattr(self, name)}")
        if self.workers < 1 or self.max_pending < 1:
            raise ValueError("StoreSettings.workers and max_pending must be at least 1")

    def expiry(self, key: FactKey, outcome: Outcome[Any], now: float) -> float | None:
        """When a record of ``outcome`` observed at ``now`` expires: None, never."""
        if isinstance(outcome, Found):
            # A digest names the same bytes forever; a tag can be pushed again.
            return None if key.image.digest is not None and key.cloud == HUAWEI else now + self.tag_ttl
        if isinstance(outcome, NotFound):
            return now + self.negative_ttl
        if isinstance(outcome, NotApplicable):
            return None
        retry = outcome.retry_after if isinstance(outcome, Throttled) else None
        return now + max(retry or 0.0, self.failure_ttl)
