"""
Facts shared by every replica: the cluster's ImageFacts in front of the in-process resolver.

`SharedFacts` is the `FactSource` admission uses. For each fact a review needs:

1. **Warm**: the ImageFact is in the index (a dict kept current by a watch)
   with a fresh status: its outcome is the answer. CPU only, no API call.
2. **Miss**: no ImageFact, or its status has expired. The replica asks for it
   (creates the ImageFact with its spec; AlreadyExists means someone already
   asked; an expired one is marked requested again) and waits, within the
   review's deadline, for the leader's answer to reach its index. An expired
   `Found` younger than ``max_stale`` answers (marked stale) if the leader is
   too slow.
3. **The leader** (the replica holding the Lease, `start_leading`) serves what
   is pending from a `FairQueue`: namespaces take turns, so one flooding
   namespace cannot starve another; a few workers only, or the cloud's limiter
   would become a FIFO again. It resolves through the existing `FactResolver`
   (single flight, breakers, client-side quota: only the leader calls the
   clouds), asking again what a tag points at whatever the in-process caches
   hold (``fresh``: a stored fact is as old as its ``observedAt`` says, never
   a cached answer re-stamped), and writes the status, guarded by the
   resourceVersion it read, only when it changed. Used tag facts are refreshed
   ahead of expiry (``facts.upkeep``). A `NotFound` is stored with the negative TTL and a failure
   until its retry time, so repeats cost nothing until then. A new leader makes
   no HSS call until its predecessor's quota windows have passed (`Handover`).
4. **Known and ahead of need**: `known` answers from the index alone (the
   audit reads it: no wait, no write, no call), and `prefetch` makes sure a
   fact will be resolved, queued below every admission miss (running
   workloads' images, then the registry's inventory; see ``facts.fairqueue``).
5. **Degraded**: when the ImageFact cannot be written (RBAC removed, API server
   down), the replica resolves in-process through its own resolver, as before
   the store existed, for ``degraded_for`` seconds before trying the store
   again; admission never depends on the store being up.

The namespace a lookup is for comes from `REQUESTING_NAMESPACE`, a context
variable the webhook sets per review (the `FactSource` protocol is shared with
``image-gate check``, which has no namespace).

No Kubernetes here: the index and the writes are behind `FactStoreBackend`
(``image_gate.kube.factstore``); that contract, the observer and `StoreSettings` are in
``facts.store``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from image_gate.core.clock import Clock, Deadline, Sleep, monotonic, sleep
from image_gate.core.cloudnames import ALIYUN, HUAWEI
from image_gate.core.imagefacts import FactName, ImageFacts, StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Failure, Found, Outcome, TimedOut
from image_gate.facts.calllog import Handover
from image_gate.facts.fairqueue import FairQueue
from image_gate.facts.records import Cloud, FactKey, FactRecord, StoredFact
from image_gate.facts.registries import RegistryMapping
from image_gate.facts.resolver import FactResolver
from image_gate.facts.store import (
    PREFETCH_GROUPS,
    QUEUE_TIERS,
    REQUESTING_NAMESPACE,
    FactStoreBackend,
    NullSharedFactsObserver,
    Priority,
    SharedFactsObserver,
    StoreSettings,
    StoreUnavailable,
    queue_tier,
)
from image_gate.facts.upkeep import REFRESH_GROUP, Upkeep

__all__ = ["SharedFacts"]

logger = logging.getLogger(__name__)

_NO_NAMESPACE: Final = "(none)"
_WRITE_ATTEMPTS: Final = 4
_CONFLICT_PAUSE: Final = 0.25
_STORE_API: Final = "ImageFact"
_DEFAULT_SETTINGS: Final = StoreSettings()
"""One instance, as the default argument was when StoreSettings lived here (it is frozen)."""

_Answer = tuple[Outcome[Any], tuple[StaleFact, ...]]


class SharedFacts:
    """The `FactSource` of a replica: the cluster's facts first, the leader for the rest."""

    def __init__(
        self,
        resolver: FactResolver,
        backend: FactStoreBackend,
        *,
        mapping: RegistryMapping | None = None,
        settings: StoreSettings = _DEFAULT_SETTINGS,
        wall: Clock = time.time,
        clock: Clock = monotonic,
        sleep: Sleep = sleep,
        observer: SharedFactsObserver | None = None,
    ) -> None:
        self.settings = settings
        self._resolver = resolver
        self._backend = backend
        self._mapping = mapping if mapping is not None else resolver.mapping
        self._wall = wall
        self._clock = clock
        self._sleep = sleep
        self._observer: SharedFactsObserver = observer if observer is not None else NullSharedFactsObserver()
        self._names: dict[tuple[Cloud, ImageReference], FactKey | None] = {}
        self._waiters: dict[str, asyncio.Future[_Answer]] = {}
        self._waiting: dict[str, int] = {}
        """Reviews waiting on each name's waiter: the last to give up drops it (a fact never answered)."""
        self._requests: dict[str, asyncio.Task[None]] = {}
        self._asked: dict[str, tuple[float | None, int]] = {}
        """Names this replica asked for, with the observedAt of the answer it asked over (None: none yet) and
        the queue tier it asked in."""
        self._marked: dict[str, float] = {}
        """Facts whose use this replica recorded, and when."""
        self._background: set[asyncio.Task[None]] = set()
        self._degraded_until = float("-inf")
        self._queue: FairQueue[str, FactKey] = FairQueue(max_items=settings.max_pending, tiers=QUEUE_TIERS)
        self._workers: list[asyncio.Task[None]] = []
        self._resolving: set[str] = set()
        """Names a worker is resolving now: asking for them again queues nothing."""
        self._written: dict[str, FactRecord] = {}
        """What this leader stored lately, until its watch brings it back: the index may lag behind our writes,
        and a fact queued again meanwhile must not be resolved again (a fresh lookup is a cloud call)."""
        self._handover = Handover()
        self._leading = False

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def degraded(self) -> bool:
        return self._clock() < self._degraded_until

    @property
    def awaited(self) -> int:
        """Facts some review of this replica is waiting for right now."""
        return len(self._waiters)

    # -- the FactSource

    async def resolve(self, image: ImageReference, *, base_image: bool, digest: bool, deadline: Deadline) -> ImageFacts:
        base: _Answer | None = None
        registry: _Answer | None = None
        if base_image and digest:
            base, registry = await asyncio.gather(
                self._fact(HUAWEI, image, deadline, "base image"),
                self._fact(ALIYUN, image, deadline, "registry digest"),
            )
        elif base_image:
            base = await self._fact(HUAWEI, image, deadline, "base image")
        elif digest:
            registry = await self._fact(ALIYUN, image, deadline, "registry digest")
        return ImageFacts(
            base_image=base[0] if base is not None else None,
            registry_digest=registry[0] if registry is not None else None,
            stale=(base[1] if base is not None else ()) + (registry[1] if registry is not None else ()),
        )

    def answered_at_once(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        """`resolve`'s answer when every fact it needs is stored and fresh (or needs no call), without an
        await: a warm review's (`image_gate.core.admission`). None when any would be waited for, answered
        stale or asked for; `resolve` then does that."""
        base = self._fact_at_once(HUAWEI, image) if base_image else None
        if base_image and base is None:
            return None
        registry = self._fact_at_once(ALIYUN, image) if digest else None
        if digest and registry is None:
            return None
        return ImageFacts(base_image=base, registry_digest=registry)

    def _fact_at_once(self, cloud: Cloud, image: ImageReference) -> Outcome[Any] | None:
        """`_fact`'s outcome when it is fresh in the index (its use noted) or needs no call; else None."""
        key = self._key(cloud, image)
        if key is None:  # no mapping, no tag: the resolver's answer, no call and no hit counted
            facts = self._resolver.answered_at_once(image, base_image=cloud == HUAWEI, digest=cloud == ALIYUN)
            return None if facts is None else facts.base_image if cloud == HUAWEI else facts.registry_digest
        refused = self._resolver.region_refusal(cloud, image, key.location.region)
        if refused is not None:
            return refused
        if self.degraded:
            return None
        stored = self._backend.lookup(key.name)
        record = stored.record if stored is not None else None
        if stored is None or record is None:
            return None
        now = self._wall()
        if not record.fresh(now):
            return None
        self._note_use(stored, now)
        return record.outcome

    # -- what is known, and what will be

    def known(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        """The facts the index holds, fresh or stale but usable; None if a needed one is not answered yet.

        CPU only and without side effects (no use recorded, nothing asked): for readers that judge what
        runs rather than admit it (the audit), which queue what is missing with `prefetch`. An expired
        `Found` younger than ``max_stale`` answers, marked stale, as it would at admission; an expired
        "not found" or failure does not (it is asked again).
        """
        base = self._known(HUAWEI, image, "base image") if base_image else None
        registry = self._known(ALIYUN, image, "registry digest") if digest else None
        if (base_image and base is None) or (digest and registry is None):
            return None
        stored_id = self._stored_hss_image_id(image) if base is not None and isinstance(base[0], Found) else None
        return ImageFacts(
            base_image=base[0] if base is not None else None,
            registry_digest=registry[0] if registry is not None else None,
            stale=(base[1] if base is not None else ()) + (registry[1] if registry is not None else ()),
            hss_image_id=stored_id,
        )

    def _known(self, cloud: Cloud, image: ImageReference, fact: FactName) -> _Answer | None:
        key = self._key(cloud, image)
        if key is None:
            unasked = self._resolver.answered_without_call(image, base_image=cloud == HUAWEI)
            return (unasked, ()) if unasked is not None else None
        refused = self._resolver.region_refusal(cloud, image, key.location.region)
        if refused is not None:
            return refused, ()
        stored = self._backend.lookup(key.name)
        record = stored.record if stored is not None else None
        if record is None:
            return None
        now = self._wall()
        if record.fresh(now):
            return record.outcome, ()
        age = now - record.observed_at
        if isinstance(record.outcome, Found) and age < self.settings.max_stale:
            because = TimedOut(cloud=key.cloud, api=_STORE_API, detail="expired; not refreshed yet")
            return record.outcome, (StaleFact(fact, age, (because,)),)
        return None

    def _stored_hss_image_id(self, image: ImageReference) -> str | None:
        key = self._key(HUAWEI, image)
        stored = self._backend.lookup(key.name) if key is not None else None
        return stored.record.hss_image_id if stored is not None and stored.record is not None else None

    def prefetch(self, image: ImageReference, *, base_image: bool, digest: bool, priority: Priority) -> None:
        """Make sure the facts will be resolved, below every admission miss; never waits, never raises.

        No-op for what is stored and fresh (or asked for already, or answered without a call). The leader
        queues it; another replica creates the ImageFact (or marks an expired one requested) with
        ``requested-by`` naming the priority, so the leader queues it just as low. Nothing is asked while
        the store is degraded (resolving in-process would spend the quota of a replica that is not the
        leader) or when the fact cap is reached.
        """
        group = PREFETCH_GROUPS[priority]
        try:
            asyncio.get_running_loop()  # asking writes in the background
            if base_image:
                self._prefetch(HUAWEI, image, group)
            if digest:
                self._prefetch(ALIYUN, image, group)
        except Exception:  # a prefetch is best effort: its caller (the audit) must go on
            logger.exception("asking ahead of need for %s failed", image)

    def _prefetch(self, cloud: Cloud, image: ImageReference, group: str) -> None:
        key = self._key(cloud, image)
        if key is None or self.degraded or self._resolver.regions.refusal(cloud, key.location.region) is not None:
            return
        stored = self._backend.lookup(key.name)
        if stored is not None and stored.record is not None and stored.record.fresh(self._wall()):
            return
        if stored is None and self._backend.count() >= self.settings.upkeep.max_facts:
            return
        if self._leading:
            self._enqueue(group, key)  # the leader's write creates the ImageFact
        else:
            self._ask(key, group, stored)

    # -- admission

    async def _fact(self, cloud: Cloud, image: ImageReference, deadline: Deadline, fact: FactName) -> _Answer:
        key = self._key(cloud, image)
        if key is not None:
            refused = self._resolver.region_refusal(cloud, image, key.location.region)
            if refused is not None:
                return refused, ()
        if key is None or self.degraded:
            return await self._in_process(cloud, image, deadline)  # answered without a call, or degraded
        stored = self._backend.lookup(key.name)
        now = self._wall()
        record = stored.record if stored is not None else None
        if record is not None:
            assert stored is not None
            self._note_use(stored, now)
            if record.fresh(now):
                return record.outcome, ()
            if isinstance(record.outcome, Found) and now - record.observed_at < self.settings.max_stale:
                # Expired but not too old: answer it (marked stale) at once and have it refreshed,
                # rather than make every review wait for the leader.
                self._ask(key, REQUESTING_NAMESPACE.get() or _NO_NAMESPACE, stored)
                because = TimedOut(cloud=key.cloud, api=_STORE_API, detail="expired; the leader is refreshing it")
                return record.outcome, (StaleFact(fact, now - record.observed_at, (because,)),)
        elif stored is None and self._backend.count() >= self.settings.upkeep.max_facts:
            self._observer.fact_cap(count=self._backend.count(), reached=True)
            return await self._in_process(cloud, image, deadline)
        return await self._miss(key, stored, deadline, fact)

    def _note_use(self, stored: StoredFact, now: float) -> None:
        """Record that a review used the fact: at most once per ``used_every`` per fact and replica."""
        every = self.settings.upkeep.used_every
        last = stored.last_used
        if last is not None and now - last < every:
            return
        marked = self._marked.get(stored.name)
        if marked is not None and now - marked < every:
            return
        if len(self._marked) >= 50_000:
            self._marked.clear()
        self._marked[stored.name] = now
        task = asyncio.ensure_future(self._mark_used(stored.name, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _mark_used(self, name: str, now: float) -> None:
        try:
            await self._backend.mark_used(name, now)
        except StoreUnavailable as exc:
            logger.debug("the use of %s was not recorded: %s", name, exc)

    def _key(self, cloud: Cloud, image: ImageReference) -> FactKey | None:
        """The fact's key, or None when the resolver answers without a call (no mapping, no tag to compare)."""
        memo = (cloud, image)
        if memo in self._names:
            return self._names[memo]
        location = self._mapping.hss_location(image) if cloud == HUAWEI else self._mapping.acr_location(image)
        key = None
        if location is not None and not (cloud == ALIYUN and image.tag is None):
            key = FactKey(cloud, location, image)
        if len(self._names) >= 10_000:
            self._names.clear()  # a memo of names, not a cache of facts: rebuilding it costs a hash each
        self._names[memo] = key
        return key

    async def _miss(self, key: FactKey, stored: StoredFact | None, deadline: Deadline, fact: FactName) -> _Answer:
        name = key.name
        waiter = self._waiters.get(name)
        if waiter is None or waiter.done():
            waiter = self._waiters[name] = asyncio.get_running_loop().create_future()
        self._waiting[name] = self._waiting.get(name, 0) + 1
        try:
            return await self._wait_for_leader(key, stored, deadline, fact, waiter)
        finally:
            self._give_up_waiting(name)

    def _give_up_waiting(self, name: str) -> None:
        """One review stops waiting; when none is left, the waiter goes, so unanswered facts do not pile up."""
        left = self._waiting.get(name, 1) - 1
        if left > 0:
            self._waiting[name] = left
            return
        self._waiting.pop(name, None)
        self._waiters.pop(name, None)  # the next miss makes a new one; an answer for nobody is dropped

    async def _wait_for_leader(
        self,
        key: FactKey,
        stored: StoredFact | None,
        deadline: Deadline,
        fact: FactName,
        waiter: asyncio.Future[_Answer],
    ) -> _Answer:
        started = self._clock()
        name = key.name
        namespace = REQUESTING_NAMESPACE.get() or _NO_NAMESPACE
        if self._leading:
            self._enqueue(namespace, key)
        self._ask(key, namespace, stored)
        request = self._requests.get(name)
        if request is not None and not await self._wait({waiter, request}, deadline.remaining()):
            return self._too_late(key, stored, fact, started)
        if not waiter.done() and self.degraded:
            self._observer.miss_waited(outcome="degraded", seconds=self._clock() - started)
            return await self._in_process(key.cloud, key.image, deadline)
        if not await self._wait({waiter}, deadline.remaining()):
            return self._too_late(key, stored, fact, started)
        answer = waiter.result()
        self._observer.miss_waited(outcome=_state_name(answer[0]), seconds=self._clock() - started)
        return answer

    def _ask(self, key: FactKey, namespace: str, stored: StoredFact | None) -> None:
        """Create the ImageFact, or mark an expired one requested again: once per name, answer and tier.

        ``namespace`` is the requesting namespace, or a `PREFETCH_GROUPS` name for a fact asked for ahead of
        need. Something asked for ahead of need that a review now waits for is asked again, as the review's
        namespace, so that the leader moves it up to the admission misses.
        """
        name = key.name
        tier = queue_tier(namespace)
        record = stored.record if stored is not None else None
        if (
            stored is not None
            and (record is None or stored.pending(self._wall()))
            and queue_tier(stored.requested_by or _NO_NAMESPACE) <= tier
        ):
            return  # asked already, by us or by another replica, at least as urgently; the leader sees it
        asked_over = record.observed_at if record is not None else None
        if name in self._requests:
            return
        previous = self._asked.get(name)
        if previous is not None and previous[0] == asked_over and previous[1] <= tier:
            return
        if len(self._asked) >= 10_000:
            self._asked.clear()
        self._asked[name] = (asked_over, tier)
        task = asyncio.ensure_future(self._request(key, namespace, stored))
        self._requests[name] = task
        task.add_done_callback(lambda _: self._requests.pop(name, None))

    async def _request(self, key: FactKey, namespace: str, stored: StoredFact | None) -> None:
        try:
            await self._backend.request(key, namespace=namespace, existing=stored)
        except StoreUnavailable as exc:
            self._asked.pop(key.name, None)
            self._degrade(f"the ImageFact {key.name} could not be written: {exc}")

    def _too_late(self, key: FactKey, stored: StoredFact | None, fact: FactName, started: float) -> _Answer:
        self._observer.miss_waited(outcome="timed out", seconds=self._clock() - started)
        failure = TimedOut(
            cloud=key.cloud,
            api=_STORE_API,
            detail="the leader did not answer within the request's deadline; it goes on and the retry will find it",
        )
        record = stored.record if stored is not None else None
        if record is not None and isinstance(record.outcome, Found):
            age = self._wall() - record.observed_at
            if age < self.settings.max_stale:
                return record.outcome, (StaleFact(fact, age, (failure,)),)
        return failure, ()

    async def _in_process(self, cloud: Cloud, image: ImageReference, deadline: Deadline) -> _Answer:
        facts = await self._resolver.resolve(
            image, base_image=cloud == HUAWEI, digest=cloud == ALIYUN, deadline=deadline
        )
        outcome = facts.base_image if cloud == HUAWEI else facts.registry_digest
        assert outcome is not None
        return outcome, facts.stale

    def _degrade(self, reason: str) -> None:
        if not self.degraded:
            logger.warning("fact store degraded for %gs, resolving in-process: %s", self.settings.degraded_for, reason)
        self._degraded_until = self._clock() + self.settings.degraded_for
        self._observer.store_degraded(reason=reason)

    async def _wait(self, futures: set[asyncio.Future[Any]], seconds: float) -> bool:
        """Wait until any of ``futures`` is done, at most ``seconds`` on the injected clock; True if one is."""
        if any(f.done() for f in futures):
            return True
        if seconds <= 0:
            return False
        timer = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait({*futures, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return any(f.done() for f in futures)

    # -- what the watch delivers

    def observe(self, stored: StoredFact) -> None:
        """Called for every ImageFact the watch delivers: wakes reviews waiting for it, queues the leader's work."""
        record = stored.record
        now = self._wall()
        if record is not None and record.fresh(now):
            self._answer(stored.name, (record.outcome, ()))
        if self._leading and stored.pending(now):
            key = self._key_of(stored)
            if key is not None:
                self._enqueue(stored.requested_by or _NO_NAMESPACE, key)

    def _answer(self, name: str, answer: _Answer) -> None:
        waiter = self._waiters.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _key_of(self, stored: StoredFact) -> FactKey | None:
        """The key of an ImageFact another replica created, as *our* mapping sees it; None if it disagrees."""
        try:
            image = ImageReference.parse(stored.reference)
        except ValueError:
            logger.warning("ImageFact %s names no valid image (%r): ignored", stored.name, stored.reference)
            return None
        if stored.cloud not in (HUAWEI, ALIYUN):
            return None
        key = self._key(HUAWEI if stored.cloud == HUAWEI else ALIYUN, image)
        if key is None or key.name != stored.name:
            logger.warning("ImageFact %s does not match this replica's registry mapping: ignored", stored.name)
            return None
        return key

    # -- the leader

    def start_leading(self, handover: Handover | None = None) -> None:
        """This replica holds the Lease: serve what is pending, after the predecessor's quota windows."""
        if self._leading:
            return
        self._leading = True
        self._handover = handover if handover is not None else Handover()
        now = self._wall()
        for stored in self._backend.stored():
            if stored.pending(now):
                key = self._key_of(stored)
                if key is not None:
                    self._enqueue(stored.requested_by or _NO_NAMESPACE, key)
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"image-gate fact worker {n}") for n in range(self.settings.workers)
        ]
        upkeep = Upkeep(
            self._backend,
            self.settings.upkeep,
            refresh=lambda key: self._enqueue(REFRESH_GROUP, key),
            key_of=self._key_of,
            idle=lambda: self._queue.pending_in_tier(0) == 0,
            observer=self._observer,
            wall=self._wall,
            clock=self._clock,
            sleep=self._sleep,
        )
        self._workers.append(loop.create_task(upkeep.run(), name="image-gate fact upkeep"))

    def stop_leading(self) -> None:
        """The Lease is lost: stop resolving for others at once (what is in flight in the resolver finishes)."""
        if not self._leading:
            return
        self._leading = False
        for worker in self._workers:
            worker.cancel()
        self._workers = []
        self._queue.clear()
        self._resolving.clear()
        self._written.clear()
        self._report_pending()

    def _enqueue(self, namespace: str, key: FactKey) -> bool:
        """Queue ``key`` for the leader's workers, in the tier its group says (`queue_tier`); True if queued."""
        if key.name in self._resolving or not self._queue.push(namespace, key.name, key, tier=queue_tier(namespace)):
            return False
        self._report_pending()
        return True

    def _report_pending(self) -> None:
        self._observer.pending_by_namespace(self._queue.pending_by_group())

    async def _work(self) -> None:
        while True:
            group, name, key = await self._queue.get()
            self._report_pending()
            self._resolving.add(name)
            try:
                await self._resolve_and_store(key, ahead=queue_tier(group) > 0)
            except asyncio.CancelledError:
                raise
            except Exception:  # one fact's bug must not stop the leader's work
                logger.exception("resolving the fact %s failed", name)
            finally:
                self._resolving.discard(name)

    async def _resolve_and_store(self, key: FactKey, *, ahead: bool = False) -> None:
        """Resolve ``key`` and store the answer; ``ahead``: no review asked for it (refresh, prefetch)."""
        if key.cloud == HUAWEI:
            wait = self._handover.hold_until(HUAWEI, window=self.settings.hss_quota_window) - self._wall()
            if wait > 0:
                logger.info("waiting %.1fs for the previous leader's HSS quota window before calling HSS", wait)
                await self._sleep(wait)
        latest = self._latest_record(key.name)
        if latest is not None and not self._to_resolve(latest):
            self._answer(key.name, (latest.outcome, ()))
            return  # answered meanwhile (by us, lately or before a restart, or by a previous leader)
        budget = Deadline.after(self.settings.lookup_budget, self._clock)
        facts = await self._resolver.resolve(
            key.image, base_image=key.cloud == HUAWEI, digest=key.cloud == ALIYUN, deadline=budget, fresh=True
        )
        outcome = facts.base_image if key.cloud == HUAWEI else facts.registry_digest
        assert outcome is not None
        self._answer(key.name, (outcome, facts.stale))
        if facts.stale:
            return  # a stale fact stands in for a failure: the stored record stays as it was
        if isinstance(outcome, Failure):
            # The ImageFact keeps only the pod-facing words (facts.records): the whole detail,
            # which may name image-gate's cloud identity, is in the leader's log.
            logger.warning("the fact %s (%s) could not be resolved: %s", key.name, key.image, outcome.message)
        now = self._wall()
        expires_at = self.settings.expiry(key, outcome, now)
        record = FactRecord(outcome, observed_at=now, expires_at=expires_at, hss_image_id=facts.hss_image_id)
        self._observer.fact_resolved(cloud=key.cloud, ahead=ahead)
        await self._store(key, record)

    def _latest_record(self, name: str) -> FactRecord | None:
        """The newer of the indexed record and the one this leader wrote (which the watch may not have brought)."""
        stored = self._backend.lookup(name)
        indexed = stored.record if stored is not None else None
        written = self._written.get(name)
        if written is None:
            return indexed
        if indexed is not None and indexed.observed_at >= written.observed_at:
            del self._written[name]  # the watch has caught up
            return indexed
        return written

    def _to_resolve(self, record: FactRecord) -> bool:
        """Whether the leader resolves a stored fact again: expired, or a `Found` due for its refresh ahead."""
        now = self._wall()
        if not record.fresh(now):
            return True
        start = self.settings.upkeep.refresh_from(record)
        return isinstance(record.outcome, Found) and start is not None and start <= now

    async def _store(self, key: FactKey, record: FactRecord) -> None:
        """Write ``record``, guarded by the resourceVersion last seen; on a conflict, look again and retry.

        A conflict is usually a replica marking the fact requested (an annotation) while we resolved it:
        our answer is still the newest, so it is written over the version the watch brings. Only a record
        observed later than ours (another leader's) wins.
        """
        for attempt in range(_WRITE_ATTEMPTS):
            previous = self._backend.lookup(key.name)
            if (
                previous is not None
                and previous.record is not None
                and previous.record.observed_at > record.observed_at
            ):
                return
            try:
                result: str = await self._backend.write(key, record, previous=previous)
            except StoreUnavailable as exc:
                result = "failed"
                self._degrade(f"the status of {key.name} could not be written: {exc}")
            self._observer.store_write(result=result)
            if result in ("written", "unchanged"):
                if len(self._written) >= 10_000:
                    self._written.clear()  # a shortcut, not a store: losing it costs a lookup at worst
                self._written[key.name] = record
            if result != "conflict" or not self._leading:
                return
            await self._sleep(_CONFLICT_PAUSE * (attempt + 1))  # for the watch to bring the newer version

    async def aclose(self) -> None:
        self.stop_leading()
        tasks = [*self._requests.values(), *self._background]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _state_name(outcome: Outcome[Any]) -> str:
    """``Found``, ``NotFound``, ``Throttled``, ...: the ImageFact's state words."""
    return type(outcome).__name__
