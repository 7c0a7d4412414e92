"""
A bounded, single-flight cache of lookup outcomes, with stale-if-error.

Every admission asks the same few questions about the same few images, and the
clouds answer slowly (HSS allows 5 calls a minute per API). `OutcomeCache`
keeps the answers, and shapes how the webhook waits for new ones:

* **TTL by outcome.** A `Found` lives for the positive TTL of its key (tag-keyed
  facts a few minutes; facts about a digest never expire, only LRU eviction
  removes them). `NotFound` / `NotApplicable` live for a short negative TTL: HSS
  answers "not found" until it has scanned a new image, and we want to notice
  the scan soon. A `Failure` is never cached as fresh: the next request asks
  again (the circuit breaker, not the cache, stops that from hammering a dead
  service).
* **Single-flight.** One `asyncio.Task` per key is in flight; concurrent
  misses wait for it instead of calling the cloud again.
* **Two clocks of patience.** A caller waits at most until its own deadline
  (the admission request's); the task runs until its *lookup budget* (quota
  waits and retries included) and then stores its outcome, whether or not
  anybody is still waiting. So a lookup that outlives the admission deadline
  fills the cache, and the API server's retry of the pod is a hit. A caller
  that is cancelled, or gives up, never cancels the shared task.
* **Stale-if-error.** When the refresh fails, or the caller's deadline passes
  first, and a `Found` fetched less than ``max_stale`` ago is at hand, the
  caller gets it, marked stale. Beyond ``max_stale`` the failure is the answer.
* **Refresh-ahead** (optional). A hit on a `Found` in the last part of its TTL
  starts one background refresh, so hot tags are refreshed before they expire
  and nobody waits for them. At most ``max_refreshes`` such refreshes run at
  once per cache: on HSS every call spends quota that a cold lookup may need.

Time is injected: ``clock`` tells the time and ``sleep`` waits, so tests drive
TTLs, deadlines and budgets by hand.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Protocol, TypeAlias, TypeVar

from image_gate.core.clock import Clock, Deadline, Sleep, monotonic, sleep
from image_gate.core.outcomes import Failure, Found, LookupFailed, Outcome, TimedOut, Unavailable

__all__ = [
    "DEFAULT_TTL",
    "Answer",
    "CacheObserver",
    "Fetch",
    "NullCacheObserver",
    "OutcomeCache",
    "StaleReason",
    "TtlChoice",
]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

Fetch: TypeAlias = Callable[[Deadline], Awaitable[Outcome[T]]]
"""Asks the cloud once (retries inside are its own business) within the `Deadline` it is given."""

StaleReason = Literal["failure", "deadline"]


class _Default(enum.Enum):
    TTL = enum.auto()


DEFAULT_TTL: Final = _Default.TTL
"""``get(..., ttl=DEFAULT_TTL)``: use the cache's own positive TTL."""
TtlChoice = float | Literal[_Default.TTL] | None
"""What ``ttl=`` takes: seconds, `DEFAULT_TTL`, or None for "never expires"."""


class CacheObserver(Protocol):
    """What a cache reports for metrics; ``cache`` names the cache (``hss_image``, ...)."""

    def hit(self, *, cache: str, negative: bool) -> None:
        """A fresh entry answered; ``negative`` for a cached `NotFound` / `NotApplicable`."""

    def miss(self, *, cache: str, joined: bool) -> None:
        """No fresh entry; ``joined`` when a lookup for the key was already in flight (no new call)."""

    def stale(self, *, cache: str, reason: StaleReason, age: float) -> None:
        """A stale `Found`, ``age`` seconds old, answered for a failed or too slow refresh."""

    def timed_out(self, *, cache: str) -> None:
        """A caller's deadline passed with nothing to answer; the lookup goes on in the background."""

    def refresh_ahead(self, *, cache: str) -> None:
        """A hit near the end of its TTL started a background refresh."""

    def evicted(self, *, cache: str) -> None:
        """The entry bound was reached and the least recently used entry was dropped."""


class NullCacheObserver:
    def hit(self, *, cache: str, negative: bool) -> None:
        pass

    def miss(self, *, cache: str, joined: bool) -> None:
        pass

    def stale(self, *, cache: str, reason: StaleReason, age: float) -> None:
        pass

    def timed_out(self, *, cache: str) -> None:
        pass

    def refresh_ahead(self, *, cache: str) -> None:
        pass

    def evicted(self, *, cache: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What `OutcomeCache.get` answers: an outcome, and how fresh it is."""

    outcome: Outcome[T]
    stale: bool = False
    """True when ``outcome`` is an expired `Found` standing in for ``error``."""
    age: float = 0.0
    """Seconds since ``outcome`` was fetched from the cloud."""
    error: Failure | None = None
    """For a stale answer: the failure (or timeout) it stands in for, for logs and warnings."""


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    outcome: Outcome[T]
    """Never a `Failure`."""
    fetched_at: float
    expires_at: float
    """``math.inf`` for facts that never expire."""


class _LRU(Generic[K, T]):
    """The entries, least recently used first, and at most ``maxsize`` of them.

    One `OrderedDict` (a hit moves its key to the end; room is made at the front) instead of
    cachetools' `LRUCache`, which keeps three tables per cache (the entries, their sizes and
    their order): about a fifth less memory per entry, and the leader may hold tens of thousands.
    """

    __slots__ = ("_items", "_on_evict", "maxsize")

    def __init__(self, maxsize: int, on_evict: Callable[[], None]) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[K, _Entry[T]] = OrderedDict()
        self._on_evict = on_evict

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> _Entry[T] | None:
        """The entry, now the most recently used one; None if there is none."""
        entry = self._items.get(key)
        if entry is not None:
            self._items.move_to_end(key)
        return entry

    def __setitem__(self, key: K, entry: _Entry[T]) -> None:
        items = self._items
        items[key] = entry
        items.move_to_end(key)
        while len(items) > self.maxsize:
            items.popitem(last=False)
            self._on_evict()


class OutcomeCache(Generic[K, T]):
    """Outcomes of one kind of lookup (one cloud API), keyed by what determines them.

    ``cloud`` and ``api`` label the `TimedOut` / `Unavailable` failures the cache
    makes itself, so that they read like the ones the cloud clients return.
    """

    def __init__(
        self,
        name: str,
        *,
        cloud: str,
        api: str,
        maxsize: int,
        ttl: float | None,
        negative_ttl: float,
        max_stale: float,
        lookup_budget: float,
        refresh_ahead: float | None = None,
        max_refreshes: int = 4,
        clock: Clock = monotonic,
        sleep: Sleep = sleep,
        observer: CacheObserver | None = None,
    ) -> None:
        """
        ``ttl``: seconds a `Found` is fresh, None for never (LRU eviction only).
        ``refresh_ahead``: the fraction of a finite TTL after which a hit starts a
        background refresh (e.g. 0.8), None to wait for expiry.
        """
        if maxsize < 1:
            raise ValueError(f"{name}: maxsize must be at least 1, not {maxsize}")
        for field, value in (("ttl", ttl), ("negative_ttl", negative_ttl), ("max_stale", max_stale)):
            if value is not None and value < 0:
                raise ValueError(f"{name}: {field} must not be negative, not {value}")
        if lookup_budget <= 0:
            raise ValueError(f"{name}: lookup_budget must be positive, not {lookup_budget}")
        if refresh_ahead is not None and not 0 < refresh_ahead < 1:
            raise ValueError(f"{name}: refresh_ahead must be a fraction between 0 and 1, not {refresh_ahead}")
        self.name = name
        self.cloud = cloud
        self.api = api
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_stale = max_stale
        self.lookup_budget = lookup_budget
        self.refresh_ahead = refresh_ahead
        self.max_refreshes = max_refreshes
        self._clock = clock
        self._sleep = sleep
        self._observer: CacheObserver = observer if observer is not None else NullCacheObserver()
        self._entries: _LRU[K, T] = _LRU(maxsize, self._evicted)
        self._in_flight: dict[K, asyncio.Task[Outcome[T]]] = {}
        self._refreshing: set[K] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def maxsize(self) -> int:
        return self._entries.maxsize

    @property
    def in_flight(self) -> int:
        """Lookups running now (for tests and the readiness of a graceful shutdown)."""
        return len(self._in_flight)

    async def get(
        self,
        key: K,
        fetch: Fetch[T],
        *,
        deadline: Deadline,
        ttl: TtlChoice = DEFAULT_TTL,
        fresh: bool = False,
    ) -> Answer[T]:
        """The outcome for ``key``: cached, shared with a lookup in flight, or fetched now.

        Waits at most ``deadline.remaining()``. ``fetch`` and ``ttl`` are used only
        if this call starts the lookup; a lookup already in flight keeps its own.
        ``fresh``: no entry cached before this call answers as fresh (a refresh of a
        stored fact must not store again what this cache fetched minutes ago); a
        lookup in flight is joined, and a cached `Found` can still stand in, stale.
        """
        if self._closed:
            return Answer(Unavailable(cloud=self.cloud, api=self.api, detail="image-gate is shutting down"))
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now < entry.expires_at and not fresh:
            self._hit(key, entry, now, fetch, ttl)
            return Answer(entry.outcome, age=now - entry.fetched_at)

        task = self._in_flight.get(key)
        self._observer.miss(cache=self.name, joined=task is not None)
        if task is None:
            task = self._start(key, fetch, ttl)

        if not await self._wait(task, deadline.remaining()):
            timeout = TimedOut(
                cloud=self.cloud,
                api=self.api,
                detail="no answer within the request's deadline; the lookup goes on and will fill the cache",
            )
            return self._fallback(key, timeout, "deadline", since=now if fresh else None)
        if task.cancelled():
            # Only `aclose` cancels lookups.
            return Answer(Unavailable(cloud=self.cloud, api=self.api, detail="image-gate is shutting down"))
        outcome = task.result()
        if isinstance(outcome, Failure):
            return self._fallback(key, outcome, "failure", since=now if fresh else None)
        return Answer(outcome)

    def at_once(self, key: K) -> Outcome[T] | None:
        """What `get` would answer without waiting (a fresh entry), else None; counts nothing: `count_hit` does.

        For a reader that answers without awaiting when every step it needs is cached (a warm review), and
        asks `get` otherwise: checking first and counting after keeps a hit from being counted twice.
        """
        entry = self._entries.get(key)
        if entry is None or self._closed or self._clock() >= entry.expires_at:
            return None
        return entry.outcome

    def count_hit(self, key: K, fetch: Fetch[T], *, ttl: TtlChoice = DEFAULT_TTL) -> None:
        """Count what `at_once` answered for ``key`` as the hit `get` would count, and refresh it ahead when due."""
        entry = self._entries.get(key)
        if entry is not None:
            self._hit(key, entry, self._clock(), fetch, ttl)

    def warm(self, key: K, fetch: Fetch[T], *, ttl: TtlChoice = DEFAULT_TTL) -> None:
        """Start a background lookup of ``key`` unless it is fresh or in flight; do not wait.

        For chained lookups: when step one finds the key of step two, it starts
        step two at once, so that the chain completes (and the cache fills) even
        if every caller's deadline passes during step one.
        """
        if self._closed or key in self._in_flight:
            return
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.expires_at:
            return
        self._start(key, fetch, ttl)

    async def aclose(self) -> None:
        """Cancel every lookup in flight and wait until they have ended; later `get`s fail fast."""
        self._closed = True
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals

    def _hit(self, key: K, entry: _Entry[T], now: float, fetch: Fetch[T], ttl: TtlChoice) -> None:
        negative = not isinstance(entry.outcome, Found)
        self._observer.hit(cache=self.name, negative=negative)
        if not negative and self._due_for_refresh(entry, now) and key not in self._in_flight:
            self._refresh_ahead(key, fetch, ttl)

    def _due_for_refresh(self, entry: _Entry[T], now: float) -> bool:
        if self.refresh_ahead is None or math.isinf(entry.expires_at):
            return False
        return now >= entry.fetched_at + self.refresh_ahead * (entry.expires_at - entry.fetched_at)

    def _refresh_ahead(self, key: K, fetch: Fetch[T], ttl: float | Literal[_Default.TTL] | None) -> None:
        if len(self._refreshing) >= self.max_refreshes:
            return
        self._observer.refresh_ahead(cache=self.name)
        self._refreshing.add(key)
        task = self._start(key, fetch, ttl)
        task.add_done_callback(lambda _: self._refreshing.discard(key))

    def _start(self, key: K, fetch: Fetch[T], ttl: float | Literal[_Default.TTL] | None) -> asyncio.Task[Outcome[T]]:
        positive_ttl = self.ttl if ttl is DEFAULT_TTL else ttl
        task = asyncio.get_running_loop().create_task(
            self._lookup(key, fetch, positive_ttl), name=f"image-gate {self.name} lookup {key!r}"
        )
        self._in_flight[key] = task

        def forget(done: asyncio.Task[Outcome[T]]) -> None:
            if self._in_flight.get(key) is done:
                del self._in_flight[key]

        task.add_done_callback(forget)
        return task

    async def _lookup(self, key: K, fetch: Fetch[T], ttl: float | None) -> Outcome[T]:
        """The shared task: fetch within the lookup budget, and store what is worth storing."""
        budget = Deadline(at=self._clock() + self.lookup_budget, clock=self._clock)
        outcome = await self._fetch_within(fetch, budget)
        if not isinstance(outcome, Failure):
            fetched_at = self._clock()
            lifetime = ttl if isinstance(outcome, Found) else self.negative_ttl
            expires_at = math.inf if lifetime is None else fetched_at + lifetime
            self._entries[key] = _Entry(outcome, fetched_at, expires_at)
        return outcome

    async def _fetch_within(self, fetch: Fetch[T], budget: Deadline) -> Outcome[T]:
        inner: asyncio.Future[Outcome[T]] = asyncio.ensure_future(fetch(budget))
        try:
            if not await self._wait(inner, budget.remaining()):
                return TimedOut(
                    cloud=self.cloud,
                    api=self.api,
                    detail=f"the lookup did not finish within its budget of {self.lookup_budget:g}s",
                )
            try:
                return inner.result()
            except LookupFailed as exc:
                return exc.failure
            except Exception as exc:
                # A bug in a client must not take the webhook down: it becomes an unresolved fact.
                logger.exception("%s lookup raised instead of returning an outcome", self.name)
                return Failure(cloud=self.cloud, api=self.api, detail=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if not inner.done():
                inner.cancel()
                await asyncio.wait({inner})

    async def _wait(self, future: asyncio.Future[Outcome[T]], seconds: float) -> bool:
        """Wait for ``future`` at most ``seconds`` on the injected clock; True if it is done.

        `asyncio.wait` never cancels what it waits for, so a caller that is
        cancelled here leaves the shared lookup running (what `asyncio.shield` is for).
        """
        if future.done():
            return True
        if seconds <= 0:
            return False
        timer = asyncio.ensure_future(self._sleep(seconds))
        try:
            either: set[asyncio.Future[Any]] = {future, timer}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return future.done()

    def _fallback(self, key: K, failure: Failure, reason: StaleReason, *, since: float | None = None) -> Answer[T]:
        """What to answer instead of ``failure``: a fresh entry stored meanwhile (fetched ``since`` then, when
        given), a stale `Found`, or nothing."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            age = now - entry.fetched_at
            if now < entry.expires_at and (since is None or entry.fetched_at >= since):
                return Answer(entry.outcome, age=age)
            if isinstance(entry.outcome, Found) and age < self.max_stale:
                self._observer.stale(cache=self.name, reason=reason, age=age)
                return Answer(entry.outcome, stale=True, age=age, error=failure)
        if reason == "deadline":
            self._observer.timed_out(cache=self.name)
        return Answer(failure)

    def _evicted(self) -> None:
        self._observer.evicted(cache=self.name)
