"""
How much memory 100,000 facts take in one replica: the shared index and the in-process caches.

Filling a running replica with 100,000 facts through its clouds would take HSS's quota for days,
and through the API server (100,000 ImageFacts) longer than the benchmark may run; so a process of
its own imports what ``image-gate run`` imports, then holds the facts the way a replica does:

* the shared index: 100,000 ImageFact objects, each read by ``stored_fact`` as kopf's index
  handler reads it, kept by name (kopf's index keeps one `StoredFact` per object, not the body);
* the in-process caches: 50,000 SWR images (an HSS image id per tag, then the base image per id)
  and 50,000 ACR images (the registry digest per tag), in the resolver's `OutcomeCache`s.

The chart's defaults hold fewer (the index stops growing at 50,000 facts, each cache at 10,000
entries), so the figure is an upper bound. Prints one JSON object: RSS in MiB before, with the
index, and with the caches too.
Run by ``bench.bench_load``, or alone: ``python -m bench.fact_memory [--facts N]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import image_gate.app.run  # noqa: F401 -- the modules a replica holds, before any fact
from image_gate.core.images import ImageReference
from image_gate.core.locations import AcrLocation, HssLocation
from image_gate.core.outcomes import BaseImage, Found, Outcome
from image_gate.facts.cache import OutcomeCache, _Entry
from image_gate.facts.records import FactKey, FactRecord, StoredFact, spec_of, status_of, stored_fact

__all__ = ["main", "rss_mib"]

HSS = HssLocation(region="cn-north-4", image_type="private_image", project_id="0" * 32)
ACR = AcrLocation(region="cn-hangzhou", instance_id="cri-bench0000000000")


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def reference(n: int) -> ImageReference:
    if n % 2:
        return ImageReference.parse(f"demo-registry.cn-hangzhou.cr.aliyuncs.com/team{n % 97}/app{n}:1.{n % 40}.0")
    return ImageReference.parse(f"swr.cn-north-4.myhuaweicloud.com/team{n % 97}/app{n}:1.{n % 40}.0")


def index_of(facts: int, now: float) -> dict[str, list[StoredFact]]:
    """What kopf's index holds for ``facts`` ImageFacts (each body is built, read, and dropped)."""
    index: dict[str, list[StoredFact]] = {}
    for n in range(facts):
        image = reference(n)
        key = FactKey("aliyun", ACR, image) if n % 2 else FactKey("huawei", HSS, image)
        outcome: Outcome[Any] = (
            Found(digest(f"acr{n}"), request_id=f"req-{n}")
            if n % 2
            else Found(BaseImage("Debian GNU/Linux", "12", digest(f"layer{n % 50}")), request_id=f"req-{n}")
        )
        body = {
            "apiVersion": "imagegate.io/v1alpha1",
            "kind": "ImageFact",
            "metadata": {"name": key.name, "resourceVersion": str(1000 + n)},
            "spec": spec_of(key),
            "status": status_of(FactRecord(outcome, observed_at=now, expires_at=now + 300)),
        }
        index[key.name] = [stored_fact(body)]
    return index


def caches_of(facts: int, now: float) -> list[OutcomeCache[Hashable, Any]]:
    """The resolver's caches, each entry as a finished lookup leaves it.

    Entries go straight into the LRU: through ``warm`` every one would cost an asyncio task, and
    150,000 of them minutes of this machine's CPU, for the same entries in the end.
    """

    def cache(name: str) -> OutcomeCache[Hashable, Any]:
        return OutcomeCache(
            name,
            cloud="bench",
            api=name,
            maxsize=facts,
            ttl=300.0,
            negative_ttl=30.0,
            max_stale=3600.0,
            lookup_budget=10.0,
        )

    images, bases, digests = cache("hss_image"), cache("hss_base_image"), cache("sas_digest")

    def put(into: OutcomeCache[Hashable, Any], key: Hashable, value: Any) -> None:
        into._entries[key] = _Entry(Found(value, request_id="req"), fetched_at=now, expires_at=now + 300)

    for n in range(facts):
        image = reference(n)
        if n % 2:
            put(digests, (ACR, image), digest(f"acr{n}"))
        else:
            image_id = f"{n:032x}"
            put(images, (HSS, image), image_id)
            put(bases, (HSS, image_id), BaseImage("Debian GNU/Linux", "12", digest(f"layer{n % 50}")))
    return [images, bases, digests]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--facts", type=int, default=100_000)
    args = parser.parse_args()
    gc.collect()
    before = rss_mib()
    index = index_of(args.facts, time.time())
    gc.collect()
    indexed = rss_mib()
    caches = caches_of(args.facts, time.monotonic())
    gc.collect()
    after = rss_mib()
    print(
        json.dumps(
            {
                "facts": args.facts,
                "index": len(index),
                "cached": sum(len(c) for c in caches),
                "rss_before_mib": round(before, 1),
                "rss_indexed_mib": round(indexed, 1),
                "rss_after_mib": round(after, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
