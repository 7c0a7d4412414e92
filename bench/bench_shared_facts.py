"""
A cold burst of new images over two replicas, with HSS's quota enforced: each replica on its own
(before ImageFacts) against replicas sharing facts through one leader (after).

Both replicas see every image (the API server spreads a rollout's pods over them) and retry a
denied pod every second, as the controllers do, until every image is admitted. cloudsim answers
429 beyond the quota. Printed per scenario: HSS calls per API, 429s, and the time until every
image was admitted by both replicas; then a warm review's cost through each path.

The replicas run in this process over the real cloud clients and cloudsim (HTTPS on 127.0.0.1);
the ImageFacts live in an in-memory stand-in for the API server whose "watch" delivers each write
to both replicas at once (the e2e tests measure the real API server). By default the quota is HSS's
at ten times its pace (5 calls per 6 s, not per minute), so 100 images take minutes rather than
half an hour; ``--rate 5/60`` for the real pace.

Run from the repository root: ``python -m bench.bench_shared_facts [--images N] [--rate 5/6]``.
Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any

from cloudsim.catalogue import Catalogue, CatalogueImage, HuaweiImage
from cloudsim.server import SimState, Simulators
from image_gate.app.settings import Settings
from image_gate.app.wiring import fact_resolver
from image_gate.clouds.quota import Rate
from image_gate.core.admission import Admission, FactSource
from image_gate.core.clock import Deadline
from image_gate.core.evaluate import Subject
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container
from image_gate.facts.records import FactKey, FactRecord, StoredFact
from image_gate.facts.resolver import FactResolver
from image_gate.facts.shared import SharedFacts
from image_gate.facts.store import StoreSettings, WriteResult

POLICY = compile_policy(
    "base-os-known",
    {"match": {"images": ["swr.*.myhuaweicloud.com/**"]}, "baseImage": {"deniedOS": [{"name": "Windows"}]}},
)
HSS_APIS = ("ListRegistryImages", "ListImageBasicImage")


def catalogue_with(count: int) -> Catalogue:
    """The demo catalogue's credentials, and ``count`` SWR images HSS has scanned, each its own digest."""
    demo = Catalogue.load()
    images = []
    for n in range(count):
        reference = ImageReference.parse(f"swr.cn-north-4.myhuaweicloud.com/bench/app{n}:1.0")
        digest = "sha256:" + hashlib.sha256(f"bench-{n}".encode()).hexdigest()
        base = BaseImage("Ubuntu", "22.04", "sha256:" + hashlib.sha256(f"base-{n}".encode()).hexdigest())
        images.append(CatalogueImage(reference, digest, huawei=HuaweiImage(image_id=f"bench{n:04d}", base_image=base)))
    return Catalogue(demo.huawei_credentials, demo.aliyun_credentials, images)


class MemoryCluster:
    """ImageFacts with resourceVersions; every write is delivered to every replica, like a watch."""

    def __init__(self) -> None:
        self.facts: dict[str, StoredFact] = {}
        self.version = 0
        self.watchers: list[SharedFacts] = []
        self.writes = 0

    def put(self, stored: StoredFact) -> None:
        self.version += 1
        self.writes += 1
        stored = replace(stored, resource_version=str(self.version))
        self.facts[stored.name] = stored
        loop = asyncio.get_running_loop()
        for watcher in self.watchers:
            loop.call_soon(watcher.observe, stored)


class MemoryBackend:
    def __init__(self, cluster: MemoryCluster) -> None:
        self.cluster = cluster

    def lookup(self, name: str) -> StoredFact | None:
        return self.cluster.facts.get(name)

    def stored(self) -> Iterator[StoredFact]:
        return iter(list(self.cluster.facts.values()))

    def count(self) -> int:
        return len(self.cluster.facts)

    async def request(self, key: FactKey, *, namespace: str, existing: StoredFact | None) -> None:
        now = time.time()
        current = self.cluster.facts.get(key.name)
        if current is None:
            created = StoredFact(key.name, key.cloud, key.image.normalized, None, None, now, namespace, created_at=now)
            self.cluster.put(created)
        elif existing is not None:
            self.cluster.put(replace(current, requested_at=now, requested_by=namespace))

    async def write(self, key: FactKey, record: FactRecord, *, previous: StoredFact | None) -> WriteResult:
        current = self.cluster.facts.get(key.name)
        if previous is not None and current is not None and current.resource_version != previous.resource_version:
            return "conflict"
        base = current or StoredFact(key.name, key.cloud, key.image.normalized, None)
        self.cluster.put(replace(base, record=record))
        return "written"

    async def mark_used(self, name: str, at: float) -> None:
        current = self.cluster.facts.get(name)
        if current is not None:
            self.cluster.put(replace(current, last_used=at))

    async def delete(self, stored: StoredFact) -> bool:
        return self.cluster.facts.pop(stored.name, None) is not None

    async def warn(self, reason: str, message: str) -> None:
        pass


class Outcomes:
    """A `CallObserver` counting the HTTP calls each replica made, by API and outcome."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()

    def upstream_call(self, *, cloud: str, api: str, outcome: str, seconds: float) -> None:
        self.calls[(api, outcome)] += 1

    def quota_wait(self, *, cloud: str, api: str, seconds: float) -> None:
        pass


@asynccontextmanager
async def replicas(settings: Settings, environ: dict[str, str], *, shared: bool) -> AsyncIterator[list[Any]]:
    """Two replicas' fact sources (and their call counters); with ``shared``, replica 0 leads."""
    cluster = MemoryCluster()
    async with AsyncExitStack() as stack:
        sources: list[Any] = []
        for n in range(2):
            outcomes = Outcomes()
            resolver: FactResolver = await stack.enter_async_context(
                fact_resolver(settings, environ=environ, calls=outcomes)
            )
            source: FactSource = resolver
            if shared:
                facts = SharedFacts(resolver, MemoryBackend(cluster), settings=StoreSettings())
                cluster.watchers.append(facts)
                stack.push_async_callback(facts.aclose)
                if n == 0:
                    facts.start_leading()
                source = facts
            sources.append((source, outcomes))
        yield sources


def pod(image: str, n: int) -> Subject:
    return Subject("Pod", f"bench/pod-{n}", "bench", {}, (Container("container", "app", image),))


async def burst(sources: list[Any], images: list[str], *, give_up: float) -> float:
    """Every image on every replica at once; denied ones again each second; seconds until all admitted."""
    admissions = [Admission(source, deadline=3.0) for source, _ in sources]
    pending = {(index, image) for index in range(len(admissions)) for image in images}
    started = time.monotonic()
    while pending and time.monotonic() - started < give_up:
        items = sorted(pending)
        reviews = await asyncio.gather(
            *(admissions[index].review(pod(image, n), [POLICY]) for n, (index, image) in enumerate(items))
        )
        pending -= {item for item, review in zip(items, reviews, strict=True) if review.decision.allowed}
        if pending:
            await asyncio.sleep(1.0)
    if pending:
        print(f"  {len(pending)} reviews still denied after {give_up:g}s")
    return time.monotonic() - started


async def warm_cost(source: Any, images: list[str], reviews: int) -> tuple[list[float], float]:
    """Warm reviews' durations, and the best of five rounds' mean time of one fact lookup alone."""
    admission = Admission(source, deadline=3.0)
    samples = []
    for n in range(reviews):
        review = await admission.review(pod(images[n % len(images)], n), [POLICY])
        samples.append(review.seconds)
    references = [ImageReference.parse(image) for image in images]
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for n in range(reviews):
            await source.resolve(
                references[n % len(references)], base_image=True, digest=False, deadline=Deadline.after(3.0)
            )
        rounds.append((time.perf_counter() - started) / reviews)
    return samples, min(rounds)


async def scenario(
    name: str, catalogue: Catalogue, rate: Rate, count: int, *, shared: bool, give_up: float
) -> tuple[list[float], float]:
    state = SimState(catalogue=catalogue, hss_rate=rate)
    with Simulators(catalogue, state=state) as sim:
        huawei, aliyun = catalogue.huawei_credentials[0], catalogue.aliyun_credentials[0]
        environ = {
            "HUAWEICLOUD_SDK_AK": huawei.ak,
            "HUAWEICLOUD_SDK_SK": huawei.sk,
            "HUAWEICLOUD_SDK_PROJECT_ID": huawei.project_id,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": aliyun.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": aliyun.access_key_secret,
        }
        settings = Settings(hss_endpoint=sim.hss_url, sas_endpoint=sim.sas_url, hss_rate=rate)
        images = [str(image.reference) for image in catalogue.images[:count]]
        async with replicas(settings, environ, shared=shared) as sources:
            seconds = await burst(sources, images, give_up=give_up)
            calls = state.faults.snapshot()
            outcomes: Counter[tuple[str, str]] = sum((o.calls for _, o in sources), Counter())
            throttled = sum(n for (api, outcome), n in outcomes.items() if outcome == "throttled")
            per_api = ", ".join(f"{api} {calls.get(api, 0)}" for api in HSS_APIS)
            print(f"{name}: {count} new images on 2 replicas, all admitted by both after {seconds:.1f}s")
            print(f"  HSS calls: {per_api}; 429s: {throttled}")
            return await warm_cost(sources[1][0], images, 2000)


async def bench(count: int, rate: Rate, give_up: float) -> None:
    catalogue = catalogue_with(count)
    print(f"HSS quota enforced by cloudsim and paced by image-gate: {rate} per API")
    before = await scenario("before (each replica on its own)", catalogue, rate, count, shared=False, give_up=give_up)
    after = await scenario("after (ImageFacts, one leader)", catalogue, rate, count, shared=True, give_up=give_up)
    for name, (samples, lookup) in (("resolver cache", before), ("ImageFact index", after)):
        print(
            f"warm review through the {name}: p50 {statistics.median(samples) * 1e6:.0f} µs, "
            f"p99 {sorted(samples)[int(0.99 * len(samples))] * 1e6:.0f} µs; "
            f"one fact lookup alone {lookup * 1e6:.1f} µs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rate", type=Rate.parse, default=Rate(5, 6.0), help="HSS quota, calls/seconds (5/6)")
    parser.add_argument("--give-up", type=float, default=900.0, help="give up on a scenario after this many seconds")
    args = parser.parse_args()
    asyncio.run(bench(args.images, args.rate, args.give_up))


if __name__ == "__main__":
    main()
