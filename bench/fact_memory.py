"""
How much memory 100,000 facts take in one replica: the ImageFact index kopf fills, and the caches.

Filling a running replica with 100,000 facts through its clouds would take HSS's quota for days,
and through the API server (100,000 ImageFacts) longer than the benchmark may run; so a process of
its own imports what ``image-gate run`` imports, then fills what a replica fills, through the code a
replica runs:

* **the index**: 100,000 ImageFact watch events (half HSS facts with a base image, half ACR facts
  with a digest), each a JSON text as the API server sends it (uid, labels, annotations, status),
  parsed with ``json.loads`` and handed to kopf's own ``process_resource_event`` with the handlers
  ``register_fact_store`` registers and the per-object memories ``image-gate run`` gives kopf: what
  kopf keeps per object (its memories, its index structures) is in the figure, not only ours;
* **the caches**: the leader resolving the same 100,000 images through a real `FactResolver`
  whose clouds answer from memory, each answer parsed from JSON by the clients' own functions
  (distinct image ids, digests and request ids; 50 base images shared by the HSS facts). The
  caches keep what their bound allows (``--cache-entries``, by default `CacheSettings`'s
  10,000 per cache, as the chart configures them): a replica whose store answers reads the index
  and never its caches, so only the leader's resolution (and the degraded in-process path) fills
  them. ``--cache-entries 100000`` measures caches that hold every fact as well.

Prints one JSON object: RSS in MiB before any fact, with the index, and with the caches too, and
bytes per indexed fact and per cache entry. The index is above the chart's ``maxFacts`` (50,000),
so the figure is an upper bound.

On the development machine (2 cores, Python 3.11, kopf 1.45), ``python -m bench.fact_memory``::

    (filled in below)

Run by ``bench.bench_load``, or alone: ``python -m bench.fact_memory [--facts N] [--cache-entries N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import kopf
from kopf._cogs.structs import ephemera, references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing, posting
from kopf._core.reactor import processing

import image_gate.app.run  # noqa: F401 -- the modules a replica holds, before any fact
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
from image_gate.kube.factstore import FACT_RESOURCE, KubeFactStore, register_fact_store
from image_gate.kube.kubeapi import KubeApi
from image_gate.kube.memos import WatchedOnlyMemories

__all__ = ["main", "rss_mib"]

BASE_IMAGES = 50
"""Distinct base images among the HSS facts: many images share a handful of base images."""


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


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
    """kopf's event processing for one replica's registry, fed events by hand instead of by a watch."""

    def __init__(self, registry: kopf.OperatorRegistry) -> None:
        self.registry = registry
        self.settings = kopf.OperatorSettings()
        self.indexers = indexing.OperatorIndexers()
        self.indexers.ensure(registry._indexing.get_all_handlers())
        self.memories = WatchedOnlyMemories()
        self.memobase = ephemera.AnyMemo(kopf.Memo())
        self.event_queue: posting.K8sEventQueue = asyncio.Queue()

    async def deliver(self, resource: references.Resource, event_type: str | None, text: bytes) -> None:
        """One watch event (``None``: an object of the initial listing), its JSON parsed as kopf's watch does."""
        await processing.process_resource_event(
            lifecycle=lifecycles.all_at_once,
            indexers=self.indexers,
            registry=self.registry,
            settings=self.settings,
            memories=self.memories,
            memobase=self.memobase,
            resource=resource,
            raw_event={"type": event_type, "object": json.loads(text)},  # type: ignore[typeddict-item]
            event_queue=self.event_queue,
        )


IMAGEFACTS = references.Resource(*FACT_RESOURCE, kind="ImageFact", namespaced=False)
NAMESPACES = references.Resource("", "v1", "namespaces", kind="Namespace", namespaced=False)


async def fill_index(kopf_replica: KopfReplica, mapping: RegistryMapping, facts: int, now: float) -> None:
    for n in range(facts):
        image = reference(n)
        acr, hss = mapping.acr_location(image), mapping.hss_location(image)
        key = FactKey("aliyun", acr, image) if acr is not None else FactKey("huawei", _known(hss), image)
        await kopf_replica.deliver(IMAGEFACTS, None, fact_event(n, key, now))
    # The listing is complete: the first namespace event hands the index to the store.
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


async def measure(facts: int, cache_entries: int) -> dict[str, Any]:
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
    await fill_index(kopf_replica, mapping, facts, time.time())
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument(
        "--cache-entries",
        type=int,
        default=CacheSettings().max_entries,
        help="the bound of each cache (default: CacheSettings', as the chart configures it)",
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.facts, args.cache_entries))))


if __name__ == "__main__":
    main()
