"""
Replicas sharing facts through an in-memory stand-in for the API server and its watch: ImageFacts with
resourceVersions, a watch that delivers every change to every replica, and each replica's `SharedFacts`
over its own `FactResolver` and fake clouds, all on one fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from image_gate.core.images import ImageReference
from image_gate.facts.records import FactKey, FactRecord, StoredFact
from image_gate.facts.resolver import FactResolver
from image_gate.facts.shared import SharedFacts
from image_gate.facts.store import StoreSettings, StoreUnavailable, WriteResult
from tests.fakeclouds import MAPPING, FakeHss, FakeSas, known
from tests.faketime import FakeTime

__all__ = ["Backend", "Cluster", "Recorder", "Replica", "cluster_fixture", "resolve"]


class Cluster:
    """ImageFacts with resourceVersions, and a watch that delivers every change to every replica."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.facts: dict[str, StoredFact] = {}
        self.version = 0
        self.watchers: list[SharedFacts] = []
        self.writable = True
        self.creates = 0
        self.requests = 0
        self.status_writes = 0
        self.uses = 0
        self.events: list[str] = []

    def _put(self, stored: StoredFact) -> None:
        self.version += 1
        stored = replace(stored, resource_version=str(self.version))
        self.facts[stored.name] = stored
        loop = asyncio.get_running_loop()
        for watcher in self.watchers:
            loop.call_soon(watcher.observe, stored)

    def backend(self) -> Backend:
        return Backend(self)


class Backend:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def lookup(self, name: str) -> StoredFact | None:
        return self.cluster.facts.get(name)

    def stored(self) -> Iterator[StoredFact]:
        return iter(list(self.cluster.facts.values()))

    async def request(self, key: FactKey, *, namespace: str, existing: StoredFact | None) -> None:
        cluster = self.cluster
        await asyncio.sleep(0)
        if not cluster.writable:
            raise StoreUnavailable("403 Forbidden")
        cluster.requests += 1
        now = cluster.time.now
        current = cluster.facts.get(key.name)
        if current is None:
            cluster.creates += 1
            created = StoredFact(key.name, key.cloud, key.image.normalized, None, None, now, namespace, created_at=now)
            cluster._put(created)
        elif existing is not None:
            cluster._put(replace(current, requested_at=now, requested_by=namespace))

    async def write(self, key: FactKey, record: FactRecord, *, previous: StoredFact | None) -> WriteResult:
        cluster = self.cluster
        await asyncio.sleep(0)
        if not cluster.writable:
            raise StoreUnavailable("403 Forbidden")
        current = cluster.facts.get(key.name)
        if previous is not None and current is not None and current.resource_version != previous.resource_version:
            return "conflict"
        if current is not None and current.record == record:
            return "unchanged"
        cluster.status_writes += 1
        base = current or StoredFact(key.name, key.cloud, key.image.normalized, None)
        cluster._put(replace(base, record=record))
        return "written"

    def count(self) -> int:
        return len(self.cluster.facts)

    async def mark_used(self, name: str, at: float) -> None:
        current = self.cluster.facts.get(name)
        if current is not None:
            self.cluster.uses += 1
            self.cluster._put(replace(current, last_used=at))

    async def delete(self, stored: StoredFact) -> bool:
        current = self.cluster.facts.get(stored.name)
        if current is None or current.resource_version != stored.resource_version:
            return False
        del self.cluster.facts[stored.name]
        return True

    async def warn(self, reason: str, message: str) -> None:
        self.cluster.events.append(reason)


class Recorder:
    def __init__(self) -> None:
        self.writes: list[str] = []
        self.waited: list[str] = []
        self.degraded: list[str] = []
        self.pending: list[dict[str, int]] = []
        self.cap: list[tuple[int, bool]] = []
        self.deleted = 0
        self.resolved: list[tuple[str, bool]] = []

    def store_write(self, *, result: str) -> None:
        self.writes.append(result)

    def miss_waited(self, *, outcome: str, seconds: float) -> None:
        self.waited.append(outcome)

    def store_degraded(self, *, reason: str) -> None:
        self.degraded.append(reason)

    def pending_by_namespace(self, counts: Any) -> None:
        self.pending.append(dict(counts))

    def fact_cap(self, *, count: int, reached: bool) -> None:
        self.cap.append((count, reached))

    def facts_deleted(self, *, count: int) -> None:
        self.deleted += count

    def fact_resolved(self, *, cloud: str, ahead: bool) -> None:
        self.resolved.append((cloud, ahead))


class Replica:
    def __init__(self, cluster: Cluster, time: FakeTime, *, latency: float = 0.0, workers: int = 2) -> None:
        self.hss = FakeHss(time, latency=latency)
        self.sas = FakeSas(time, latency=latency)
        known(self.hss, self.sas)
        self.resolver = FactResolver(MAPPING, self.hss, self.sas, clock=time, sleep=time.sleep)
        self.metrics = Recorder()
        self.facts = SharedFacts(
            self.resolver,
            cluster.backend(),
            settings=StoreSettings(workers=workers),
            wall=time,
            clock=time,
            sleep=time.sleep,
            observer=self.metrics,
        )
        cluster.watchers.append(self.facts)

    @property
    def cloud_calls(self) -> int:
        return (
            len(self.hss.find_calls) + len(self.hss.base_calls) + len(self.sas.find_calls) + len(self.sas.digest_calls)
        )


async def resolve(replica: Replica, time: FakeTime, image: ImageReference, *, seconds: float = 3.0) -> Any:
    task = asyncio.ensure_future(
        replica.facts.resolve(image, base_image=True, digest=True, deadline=time.deadline(seconds))
    )
    await time.advance(seconds)
    return task.result()


@pytest.fixture(name="cluster")
def cluster_fixture(time: FakeTime) -> Cluster:
    """An empty `Cluster` on the test's ``time`` (offered to every unit module by tests/unit/conftest.py)."""
    return Cluster(time)
