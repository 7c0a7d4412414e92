"""
A replica's fact holdings, filled through a replica's own code: `bench.fact_memory` measures them.

The index through kopf's ``process_resource_event`` and ``register_fact_store``'s handlers; the
caches through a `FactResolver` whose clouds answer from memory, with the clients' own parsers.
Imported by `bench.fact_memory` only after it has hidden the test-only packages.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import json
import time
from collections.abc import AsyncIterator, Hashable, Iterator
from typing import Any

import kopf
from kopf._cogs.clients import watching
from kopf._cogs.structs import ephemera, references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing, posting
from kopf._core.reactor import processing, queueing

import image_gate.app.run  # noqa: F401 -- the modules a replica holds, before any fact
from bench.fact_memory import rss_mib
from image_gate.clouds.aliyun.client import AcrRepository
from image_gate.clouds.huawei.answers import RegistryImage, base_image_info, registry_image
from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.core.locations import AcrLocation, HssLocation
from image_gate.core.outcomes import BaseImage, Found, Outcome
from image_gate.facts.cache import OutcomeCache
from image_gate.facts.records import FactKey, FactRecord, spec_of, status_of, to_rfc3339
from image_gate.facts.registries import RegistryMapping
from image_gate.facts.resolver import CacheSettings, FactResolver
from image_gate.facts.shared import SharedFacts
from image_gate.kube.factstore import FACT_RESOURCE, KubeFactStore, register_fact_store, settle_watch_workers
from image_gate.kube.kubeapi import KubeApi
from image_gate.kube.memos import WatchedOnlyMemories

__all__ = ["measure"]

BASE_IMAGES = 50
"""Distinct base images among the HSS facts: many images share a handful of base images."""


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def request_id(seed: str) -> str:
    """A request id as the clouds write them (a UUID), distinct per call."""
    hexa = hashlib.md5(seed.encode()).hexdigest()  # noqa: S324 -- an id, not a secret
    return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"


def reference(n: int) -> ImageReference:
    """Image ``n``: odd ones in ACR (a digest fact), even ones in SWR (a base-image fact)."""
    if n % 2:
        return ImageReference.parse(f"demo-registry.cn-hangzhou.cr.aliyuncs.com/team{n % 97}/app{n}:1.{n % 40}.0")
    return ImageReference.parse(f"swr.cn-north-4.myhuaweicloud.com/team{n % 97}/app{n}:1.{n % 40}.0")


def base_image_row(n: int) -> dict[str, str]:
    """HSS's ``basic-image`` answer for image ``n``."""
    versions = (("Debian GNU/Linux", "12"), ("Ubuntu", "22.04"), ("Alpine Linux", "3.20.3"), ("CentOS Linux", "7.9"))
    os_name, os_version = versions[n % BASE_IMAGES % len(versions)]
    return {"os_name": os_name, "os_version": os_version, "layer_digest": digest(f"layer{n % BASE_IMAGES}")}


def registry_digest(n: int) -> str:
    return digest(f"acr{n}")


def _from_json(value: Any) -> Any:
    """What arrives over the wire: every string a new object, as a parsed answer's are."""
    return json.loads(json.dumps(value))


# -- the clouds, answering from memory with the answers' own parsers


def _number(image: ImageReference) -> int:
    return int(image.short_name.removeprefix("app"))


class MemoryHss:
    """`HssLookups` answering at once: ``ListRegistryImages`` and ``basic-image`` rows parsed as the client does."""

    async def find_image(
        self, image: ImageReference, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[RegistryImage]:
        n = _number(image)
        row = {
            "image_id": f"{n:032x}",
            "image_digest": digest(f"swr{n}"),
            "namespace": image.namespace,
            "image_name": image.short_name,
            "image_version": image.tag,
            "image_type": location.image_type,
            "scan_status": "finish",
        }
        return Found(registry_image(_from_json(row), location.image_type), request_id=request_id(f"list{n}"))

    async def base_image(
        self, image: RegistryImage, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[BaseImage]:
        n = int(image.image_id, 16)
        return Found(base_image_info(_from_json(base_image_row(n)), None), request_id=request_id(f"base{n}"))


class MemorySas:
    """`SasLookups` answering at once: the instance row and ``DescribeImage``'s digest, parsed from JSON."""

    async def find_repository(
        self, image: ImageReference, location: AcrLocation, *, deadline: Deadline
    ) -> Outcome[AcrRepository]:
        n = _number(image)
        row = _from_json({"RegionId": location.region, "InstanceId": "cri-bench0000000000", "RepoId": f"crr-{n:016x}"})
        repository = AcrRepository(
            region=row["RegionId"],
            instance_id=row["InstanceId"],
            repo_id=row["RepoId"],
            namespace=image.namespace,
            name=image.short_name,
        )
        return Found(repository, request_id=request_id(f"repo{n}"))

    async def registry_digest(self, repository: AcrRepository, tag: str, *, deadline: Deadline) -> Outcome[str]:
        n = int(repository.repo_id.removeprefix("crr-"), 16)
        return Found(_from_json(registry_digest(n)), request_id=request_id(f"digest{n}"))


# -- the index, through kopf


def fact_event(n: int, key: FactKey, now: float) -> bytes:
    """Image ``n``'s ImageFact as a watch event's object, serialised as the API server sends it."""
    fact: Any = registry_digest(n) if n % 2 else BaseImage(**base_image_row(n))
    observed = now - n % 250  # facts are resolved at different times: no two share a timestamp object
    record = FactRecord(
        Found(fact, request_id=request_id(f"fact{n}")),
        observed_at=observed,
        expires_at=observed + 300,
        hss_image_id=None if n % 2 else f"{n:032x}",
    )
    created = to_rfc3339(now - 86_400 - n)
    body = {
        "apiVersion": "imagegate.io/v1alpha1",
        "kind": "ImageFact",
        "metadata": {
            "name": key.name,
            "uid": f"{n:08x}-5a1e-4c0d-9e2f-{n:012x}",
            "resourceVersion": str(4_000_000 + n),
            "generation": 1,
            "creationTimestamp": created,
            "labels": {"app.kubernetes.io/managed-by": "image-gate", "imagegate.io/cloud": key.cloud},
            "annotations": {
                "imagegate.io/requested-at": created,
                "imagegate.io/requested-by": f"team{n % 97}",
            },
        },
        "spec": spec_of(key),
        "status": status_of(record),
    }
    return json.dumps(body).encode()


class KopfReplica:
    """kopf's own watcher and event processing for one replica's registry, fed a listing instead of a watch."""

    def __init__(self, registry: kopf.OperatorRegistry) -> None:
        self.registry = registry
        self.settings = kopf.OperatorSettings()
        settle_watch_workers(self.settings)  # as image-gate run's kopf settings
        self.indexers = indexing.OperatorIndexers()
        self.indexers.ensure(registry._indexing.get_all_handlers())
        self.memories = WatchedOnlyMemories()
        self.memobase = ephemera.AnyMemo(kopf.Memo())
        self.event_queue: posting.K8sEventQueue = asyncio.Queue()

    def _processor(self, resource: references.Resource) -> Any:
        return functools.partial(
            processing.process_resource_event,
            lifecycle=lifecycles.all_at_once,
            indexers=self.indexers,
            registry=self.registry,
            settings=self.settings,
            memories=self.memories,
            memobase=self.memobase,
            resource=resource,
            event_queue=self.event_queue,
        )

    async def list_into_watcher(self, resource: references.Resource, objects: Iterator[bytes]) -> asyncio.Task[None]:
        """kopf's ``watcher`` for ``resource``, its API stream replaced by ``objects`` (an initial listing).

        kopf spawns a worker per object and keeps it ``batching.idle_timeout`` after the object's
        event, holding the parsed body: at a start, the listing's objects overlap in memory, as in a
        replica. Returns the watcher's task (it waits for more events once the listing is done).
        """

        async def listing(**_: Any) -> AsyncIterator[Any]:
            for count, text in enumerate(objects):
                yield {"type": None, "object": json.loads(text)}  # kopf's watch parses each object so
                if count % 64 == 0:
                    await asyncio.sleep(0)  # the API server's stream arrives in reads, not all in one turn
            yield watching.Bookmark.LISTED
            await asyncio.Event().wait()  # a quiet watch

        watching.infinite_watch = listing  # for this process's one watcher
        return asyncio.create_task(
            queueing.watcher(
                namespace=None, settings=self.settings, resource=resource, processor=self._processor(resource)
            )
        )

    async def deliver(self, resource: references.Resource, event_type: str | None, text: bytes) -> None:
        """One watch event, processed at once (no worker)."""
        await self._processor(resource)(raw_event={"type": event_type, "object": json.loads(text)})


IMAGEFACTS = references.Resource(*FACT_RESOURCE, kind="ImageFact", namespaced=False)
NAMESPACES = references.Resource("", "v1", "namespaces", kind="Namespace", namespaced=False)


def _is_kopf_worker(task: asyncio.Task[Any]) -> bool:
    coroutine = task.get_coro()
    return getattr(coroutine, "__qualname__", "") == queueing.worker.__qualname__


def fact_events(mapping: RegistryMapping, facts: int, now: float) -> Iterator[bytes]:
    for n in range(facts):
        image = reference(n)
        acr, hss = mapping.acr_location(image), mapping.hss_location(image)
        key = FactKey("aliyun", acr, image) if acr is not None else FactKey("huawei", _known(hss), image)
        yield fact_event(n, key, now)


async def fill_index(kopf_replica: KopfReplica, store: KubeFactStore, mapping: RegistryMapping, facts: int) -> None:
    """The initial listing of ``facts`` ImageFacts through kopf's watcher, until kopf's workers have all gone."""
    watcher = await kopf_replica.list_into_watcher(IMAGEFACTS, fact_events(mapping, facts, time.time()))
    quiet = 0
    while quiet < 2:  # the facts indexed and kopf's workers gone (two looks in a row)
        await asyncio.sleep(kopf_replica.settings.batching.idle_timeout + 0.5)
        working = any(_is_kopf_worker(task) for task in asyncio.all_tasks())
        quiet = quiet + 1 if len(store._facts) >= facts and not working else 0
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    # The listing is complete: kopf's first namespace event tells the store to answer.
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "uid": "ns-default"}}
    await kopf_replica.deliver(NAMESPACES, None, json.dumps(namespace).encode())


def _known(location: HssLocation | None) -> HssLocation:
    if location is None:
        raise RuntimeError("the default registry mapping sends no bench image to HSS")
    return location


async def fill_caches(resolver: FactResolver, facts: int) -> None:
    """The leader resolving every fact, as its fact workers do (a few at a time)."""
    deadline = Deadline.after(3600.0)
    for start in range(0, facts, 8):
        await asyncio.gather(
            *(
                resolver.resolve(reference(n), base_image=n % 2 == 0, digest=n % 2 == 1, deadline=deadline)
                for n in range(start, min(start + 8, facts))
            )
        )


def caches_of(resolver: FactResolver) -> list[OutcomeCache[Hashable, Any]]:
    return [value for value in vars(resolver).values() if isinstance(value, OutcomeCache)]


async def measure(facts: int, cache_entries: int | None = None) -> dict[str, Any]:
    """RSS before any fact, with ``facts`` in the index, and with the caches filled (bounded by ``cache_entries``)."""
    cache_entries = CacheSettings().max_entries if cache_entries is None else cache_entries
    mapping = RegistryMapping()
    resolver = FactResolver(mapping, MemoryHss(), MemorySas(), settings=CacheSettings(max_entries=cache_entries))
    store = KubeFactStore(KubeApi())
    shared = SharedFacts(resolver, store, mapping=mapping)
    registry = kopf.OperatorRegistry()
    register_fact_store(registry, facts=shared, store=store)
    kopf_replica = KopfReplica(registry)

    gc.collect()
    before = rss_mib()
    started = time.monotonic()
    await fill_index(kopf_replica, store, mapping, facts)
    gc.collect()
    indexed = rss_mib()
    index_seconds = time.monotonic() - started
    if store.count() != facts:
        raise RuntimeError(f"the store sees {store.count()} facts, not {facts}")

    started = time.monotonic()
    await fill_caches(resolver, facts)
    gc.collect()
    after = rss_mib()
    cached = sum(len(cache) for cache in caches_of(resolver))
    cache_seconds = time.monotonic() - started
    await shared.aclose()
    await resolver.aclose()
    return {
        "facts": facts,
        "index": store.count(),
        "cached": cached,
        "cache_entries_bound": cache_entries,
        "rss_before_mib": round(before, 1),
        "rss_indexed_mib": round(indexed, 1),
        "rss_after_mib": round(after, 1),
        "index_bytes_per_fact": round((indexed - before) * 2**20 / facts),
        "cache_bytes_per_entry": round((after - indexed) * 2**20 / cached) if cached else None,
        "seconds": {"index": round(index_seconds, 1), "caches": round(cache_seconds, 1)},
    }
