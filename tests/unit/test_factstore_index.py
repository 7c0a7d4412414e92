"""The ImageFact index through kopf's own event processing: what the store answers, and what kopf keeps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
from kopf._cogs.structs import ephemera, references
from kopf._cogs.structs.ids import HandlerId
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing
from kopf._core.reactor import processing

from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found
from image_gate.facts.records import FactKey, FactRecord, StoredFact, spec_of, status_of
from image_gate.facts.resolver import FactResolver
from image_gate.facts.shared import SharedFacts
from image_gate.kube.factstore import (
    FACT_RESOURCE,
    FACTS_INDEX,
    WORKER_IDLE_SECONDS,
    KubeFactStore,
    register_fact_store,
    settle_watch_workers,
)
from image_gate.kube.kubeapi import KubeApi
from image_gate.kube.memos import WatchedOnlyMemories
from tests.fakeclouds import MAPPING

IMAGEFACTS = references.Resource(*FACT_RESOURCE, kind="ImageFact", namespaced=False)
NAMESPACES = references.Resource("", "v1", "namespaces", kind="Namespace", namespaced=False)
NOW = 1_780_000_000.0


class Replica:
    """One replica's fact handlers behind kopf's ``process_resource_event``, fed watch events by hand."""

    def __init__(self) -> None:
        self.store = KubeFactStore(KubeApi())
        self.registry = kopf.OperatorRegistry()
        register_fact_store(
            self.registry, facts=SharedFacts(FactResolver(MAPPING, None, None), self.store), store=self.store
        )
        self.indexers = indexing.OperatorIndexers()
        self.indexers.ensure(self.registry._indexing.get_all_handlers())
        self.memories = WatchedOnlyMemories()
        self.delivered: list[StoredFact] = []
        self.store.subscribe(self.delivered.append)

    async def deliver(self, resource: references.Resource, event_type: str | None, body: dict[str, Any]) -> None:
        raw: Any = {"type": event_type, "object": json.loads(json.dumps(body))}
        await processing.process_resource_event(
            lifecycle=lifecycles.all_at_once,
            indexers=self.indexers,
            registry=self.registry,
            settings=kopf.OperatorSettings(),
            memories=self.memories,
            memobase=ephemera.AnyMemo(kopf.Memo()),
            resource=resource,
            raw_event=raw,
            event_queue=asyncio.Queue(),
        )

    async def listing_done(self) -> None:
        """The first namespace event: kopf runs it only once every listing is indexed."""
        await self.deliver(
            NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "uid": "ns-1"}}
        )


def key(n: int) -> FactKey:
    image = ImageReference.parse(f"swr.cn-north-4.myhuaweicloud.com/team/app{n}:1.0")
    location = MAPPING.hss_location(image)
    assert location is not None
    return FactKey("huawei", location, image)


def fact(n: int, *, version: int = 1, os_version: str = "12") -> dict[str, Any]:
    record = FactRecord(
        Found(BaseImage("Debian GNU/Linux", os_version, "sha256:" + "a" * 64), "req-1"),
        observed_at=NOW,
        expires_at=NOW + 300,
    )
    return {
        "apiVersion": "imagegate.io/v1alpha1",
        "kind": "ImageFact",
        "metadata": {"name": key(n).name, "uid": f"uid-{n}", "resourceVersion": str(version)},
        "spec": spec_of(key(n)),
        "status": status_of(record),
    }


async def test_the_store_answers_every_listed_fact_once_the_listing_is_indexed() -> None:
    replica = Replica()
    assert replica.store.lookup(key(0).name) is None
    assert not replica.store.attached  # until kopf runs an ordinary handler: every listing is indexed then
    for n in range(3):
        await replica.deliver(IMAGEFACTS, None, fact(n))
    await replica.listing_done()
    stored = replica.store.lookup(key(1).name)
    assert stored is not None
    assert stored.record is not None
    assert stored.record.outcome == Found(BaseImage("Debian GNU/Linux", "12", "sha256:" + "a" * 64), "req-1")
    assert stored.reference == key(1).image.normalized
    assert replica.store.count() == 3
    assert sorted(s.name for s in replica.store.stored()) == sorted(key(n).name for n in range(3))


async def test_a_modified_fact_replaces_the_old_one_and_a_deleted_one_goes() -> None:
    replica = Replica()
    await replica.listing_done()
    await replica.deliver(IMAGEFACTS, "ADDED", fact(0))
    await replica.deliver(IMAGEFACTS, "MODIFIED", fact(0, version=2, os_version="13"))
    stored = replica.store.lookup(key(0).name)
    assert stored is not None
    assert stored.record is not None
    assert stored.resource_version == "2"
    assert stored.record.outcome.value.os_version == "13"  # type: ignore[union-attr]
    await replica.deliver(IMAGEFACTS, "DELETED", fact(0, version=3))
    assert replica.store.lookup(key(0).name) is None
    assert replica.store.count() == 0
    assert [s.resource_version for s in replica.delivered] == ["1", "2"]  # not the deletion


async def test_a_fact_the_index_handler_cannot_read_is_dropped_as_kopf_drops_it_from_its_index() -> None:
    replica = Replica()
    await replica.listing_done()
    await replica.deliver(IMAGEFACTS, "ADDED", fact(0))
    broken = fact(0, version=2)
    broken["spec"] = ["not", "a", "mapping"]
    await replica.deliver(IMAGEFACTS, "MODIFIED", broken)
    assert replica.store.lookup(key(0).name) is None


async def test_kopf_keeps_no_index_entry_and_no_memory_per_imagefact() -> None:
    """What the store's own index and the memories save: kopf's per-object structures (~1.4 KB a fact)."""
    replica = Replica()
    for n in range(50):
        await replica.deliver(IMAGEFACTS, None, fact(n))
    await replica.listing_done()
    assert replica.store.count() == 50
    assert len(replica.indexers[HandlerId(FACTS_INDEX)].index) == 0
    kept = list(replica.memories.iter_all_memories())
    assert len(kept) == 1  # the namespace's: watched objects other than ImageFacts keep theirs


def test_kopfs_workers_go_soon_after_their_event() -> None:
    settings = kopf.OperatorSettings()
    kopfs_own = settings.batching.idle_timeout
    settle_watch_workers(settings)
    assert settings.batching.idle_timeout == WORKER_IDLE_SECONDS
    assert kopfs_own > WORKER_IDLE_SECONDS
    assert settings.batching.batch_window <= WORKER_IDLE_SECONDS  # a burst of events still makes one batch
