"""
The ImageFacts in the cluster: a kopf index every replica reads, and the writes `SharedFacts` asks for.

* **The index** (`FACTS_INDEX`): every ImageFact, read once per watch event
  into a `StoredFact`, so a review reads a dict and nothing else. kopf calls
  the index handler for its initial listing before any ordinary handler, so a
  replica that starts already knows every fact the cluster has. The handler
  keeps the `StoredFact` in the store's own dict (name -> fact) and gives kopf
  nothing to index: kopf's index keeps, per object, a store, a reverse-key set
  and the object's uid, about 650 bytes beside a fact of a few hundred; the
  watch handler drops a deleted ImageFact, as kopf's index would.
* **The watch handler** hands each ImageFact to `SharedFacts.observe`: it
  wakes the reviews waiting for it and, in the leader, queues pending work.
* **Writes** go through `KubeApi`: creating an ImageFact (spec only;
  AlreadyExists means another replica asked first), marking an expired one
  requested again (two annotations), and the leader's status, a merge patch
  that names the resourceVersion it was computed from, so a deposed leader's
  late write fails instead of overwriting a newer one. A status equal to the
  stored one is not written at all.

Any write that fails for want of permission or of an API server raises
`StoreUnavailable`, and `SharedFacts` degrades to in-process lookups.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import kopf

from image_gate.core.clock import Clock
from image_gate.facts.records import (
    API_GROUP,
    API_VERSION,
    FACT_KIND,
    FACT_PLURAL,
    REQUESTED_AT,
    REQUESTED_BY,
    FactKey,
    FactRecord,
    StoredFact,
    spec_of,
    status_of,
    stored_fact,
    to_rfc3339,
)
from image_gate.facts.shared import SharedFacts
from image_gate.facts.store import StoreUnavailable, WriteResult
from image_gate.kube.kubeapi import MERGE_PATCH, ApiError, KubeApi
from image_gate.kube.lease import micro_time

__all__ = ["FACTS_INDEX", "WORKER_IDLE_SECONDS", "KubeFactStore", "register_fact_store", "settle_watch_workers"]

logger = logging.getLogger(__name__)

FACTS_INDEX: Final = "image_gate_facts"
FACT_RESOURCE: Final = (API_GROUP, API_VERSION, FACT_PLURAL)
_COLLECTION: Final = f"/apis/{API_GROUP}/{API_VERSION}/{FACT_PLURAL}"
_STATUS_FIELDS: Final = (
    "state",
    "baseImage",
    "digest",
    "hssImageId",
    "observedAt",
    "expiresAt",
    "requestId",
    "message",
    "failure",
)


class KubeFactStore:
    """`FactStoreBackend` over the ImageFact index and the API server."""

    def __init__(self, api: KubeApi, *, namespace: str = "", lease: str = "", wall: Clock = time.time) -> None:
        """``namespace`` and ``lease`` name the object Warning Events are posted on (image-gate's Lease)."""
        self._api = api
        self._namespace = namespace
        self._lease = lease
        self._wall = wall
        self._facts: dict[str, StoredFact] = {}
        """Every ImageFact the watch delivered, by name: what `keep` and `drop` maintain."""
        self._attached = False
        self._listeners: list[Callable[[StoredFact], None]] = []

    def subscribe(self, listener: Callable[[StoredFact], None]) -> None:
        """Tell ``listener`` of every ImageFact the watch delivers (not deleted ones): the audit's trigger."""
        self._listeners.append(listener)

    def delivered(self, stored: StoredFact) -> None:
        for listener in self._listeners:
            listener(stored)

    def keep(self, stored: StoredFact) -> None:
        """The newest version of an ImageFact, as kopf's index handler read it."""
        self._facts[stored.name] = stored

    def drop(self, name: str) -> None:
        """An ImageFact is gone (deleted, or unreadable by the index handler)."""
        self._facts.pop(name, None)

    def attach(self) -> None:
        """kopf has indexed its initial listing: the index answers from now on (before, a replica knows
        only part of the cluster's facts and would ask again for facts that exist)."""
        self._attached = True

    @property
    def attached(self) -> bool:
        return self._attached

    def lookup(self, name: str) -> StoredFact | None:
        return self._facts.get(name) if self._attached else None

    def stored(self) -> Iterator[StoredFact]:
        if not self._attached:
            return iter(())
        return iter(list(self._facts.values()))

    async def request(self, key: FactKey, *, namespace: str, existing: StoredFact | None) -> None:
        annotations = {REQUESTED_AT: to_rfc3339(self._wall()), REQUESTED_BY: namespace}
        try:
            if existing is None:
                await self._create(key, annotations)
            else:
                await self._api.request(
                    "PATCH",
                    f"{_COLLECTION}/{key.name}",
                    {"metadata": {"annotations": annotations}},
                    content_type=MERGE_PATCH,
                )
        except ApiError as exc:
            if exc.conflict:
                return  # somebody asked first
            raise StoreUnavailable(str(exc)) from None

    async def write(self, key: FactKey, record: FactRecord, *, previous: StoredFact | None) -> WriteResult:
        status = status_of(record)
        if previous is not None and previous.record is not None and status_of(previous.record) == status:
            return "unchanged"
        patch: dict[str, Any] = {"status": {field: status.get(field) for field in _STATUS_FIELDS}}
        if previous is not None and previous.resource_version:
            patch["metadata"] = {"resourceVersion": previous.resource_version}
        try:
            if previous is None:
                # The leader's own miss, before its watch delivered the object it (or another) created.
                try:
                    await self._create(key, {REQUESTED_AT: to_rfc3339(self._wall())})
                except ApiError as exc:
                    if not exc.conflict:
                        raise
            await self._api.request("PATCH", f"{_COLLECTION}/{key.name}/status", patch, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.conflict:
                return "conflict"  # written since we read it: the watch brings the newer one
            raise StoreUnavailable(str(exc)) from None
        return "written"

    def count(self) -> int:
        return len(self._facts) if self._attached else 0

    async def mark_used(self, name: str, at: float) -> None:
        try:
            await self._api.request(
                "PATCH",
                f"{_COLLECTION}/{name}/status",
                {"status": {"lastUsed": to_rfc3339(at)}},
                content_type=MERGE_PATCH,
            )
        except ApiError as exc:
            if not exc.not_found:
                raise StoreUnavailable(str(exc)) from None

    async def delete(self, stored: StoredFact) -> bool:
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if stored.resource_version:
            options["preconditions"] = {"resourceVersion": stored.resource_version}
        try:
            await self._api.request("DELETE", f"{_COLLECTION}/{stored.name}", options)
        except ApiError as exc:
            if not (exc.conflict or exc.not_found):
                logger.warning("the unused ImageFact %s was not deleted: %s", stored.name, exc)
            return False
        return True

    async def warn(self, reason: str, message: str) -> None:
        if not self._namespace:
            return
        now = micro_time(self._wall())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": "image-gate-", "namespace": self._namespace},
            "involvedObject": {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "name": self._lease,
                "namespace": self._namespace,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": "image-gate"},
            "reportingComponent": "image-gate",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": to_rfc3339(self._wall()),
            "lastTimestamp": to_rfc3339(self._wall()),
            "eventTime": now,
            "action": "Upkeep",
            "count": 1,
        }
        try:
            await self._api.request("POST", f"/api/v1/namespaces/{self._namespace}/events", event)
        except ApiError as exc:
            logger.warning("the %s Event was not posted: %s", reason, exc)

    async def _create(self, key: FactKey, annotations: Mapping[str, str]) -> None:
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": FACT_KIND,
            "metadata": {
                "name": key.name,
                "labels": {"app.kubernetes.io/managed-by": "image-gate", "imagegate.io/cloud": key.cloud},
                "annotations": dict(annotations),
            },
            "spec": spec_of(key),
        }
        await self._api.request("POST", _COLLECTION, body)


WORKER_IDLE_SECONDS: Final = 0.5
"""How long kopf keeps an object's worker waiting for its next event (kopf's default: 5 s)."""


def settle_watch_workers(settings: kopf.OperatorSettings) -> None:
    """Let kopf's per-object workers go soon after their event, not 5 s later.

    kopf's watch runs one worker per object with events (a task, a queue, the last raw
    body) and keeps it for ``batching.idle_timeout`` after its last event. A replica's
    start lists every ImageFact at once, so with 5 s nearly all of them had a worker at
    the same time, and the heap keeps that high-water mark for good: 20,000 facts through
    kopf's watcher took 77 MiB with 5 s, 26 MiB with 0.5 s (``bench.fact_memory``). An
    object with events further apart than this only gets a new worker for its next one.
    """
    settings.batching.idle_timeout = WORKER_IDLE_SECONDS


_QUIET_HANDLERS: Final = (FACTS_INDEX, "fact-index", "fact-watch")


class _QuietFactHandlers(logging.Filter):
    """Drops kopf's "Handler ... succeeded." lines for the fact handlers: one per ImageFact event and
    replica (50,000 at every start with a full store) would drown every other log line."""

    _quiet = frozenset(f"Handler {handler_id!r} succeeded." for handler_id in _QUIET_HANDLERS)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._quiet


def register_fact_store(registry: kopf.OperatorRegistry, *, facts: SharedFacts, store: KubeFactStore) -> None:
    """The ImageFact index and watch handler; the store answers once kopf has indexed its initial listing."""
    kopf_objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietFactHandlers) for f in kopf_objects.filters):
        kopf_objects.addFilter(_QuietFactHandlers())

    # Coroutines, not functions: kopf runs plain functions in a thread pool, and these touch the event loop's
    # futures (waking waiting reviews) -- and a thread hop per event is pure cost.
    @kopf.index(*FACT_RESOURCE, id=FACTS_INDEX, registry=registry)
    async def index_fact(name: str, body: kopf.Body, **_: Any) -> None:
        # kopf runs index handlers before the others and holds those back until every listing is
        # indexed: the pre-population the store relies on. The fact is kept by the store; kopf's
        # index stays empty (it would cost more than the fact).
        try:
            store.keep(stored_fact(body))
        except BaseException:
            store.drop(name)  # kopf drops an object whose index handler fails from its index too
            raise

    @kopf.on.event("", "v1", "namespaces", id="fact-index", registry=registry)
    async def attach_index(**_: Any) -> None:
        # Every cluster has namespaces: this runs once the indexes are complete, even with no ImageFact yet.
        store.attach()

    @kopf.on.event(*FACT_RESOURCE, id="fact-watch", registry=registry)
    async def observe_fact(type: str | None, name: str, **_: Any) -> None:
        store.attach()
        if type == "DELETED":
            store.drop(name)
            return
        stored = store.lookup(name)  # what the index handler has just read from this very event
        if stored is not None:
            facts.observe(stored)
            store.delivered(stored)
