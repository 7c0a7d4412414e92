"""
Benchmark of FactResolver and its caches: prints figures, passes or fails nothing.

    python -m bench.bench_cache [--images 1000] [--rounds 20] [--latency 0.05]    # from the repository root

* warm: every fact cached; ``resolve`` (both facts) per image, one after the
  other: p50 / p99 latency in microseconds and resolves per second. The design's
  budget is "sub-millisecond per image".
* cold: an empty cache; a burst of 100 concurrent requests for 10 images, with a
  fake upstream answering after a fixed latency. Single-flight should make it 10
  calls per API, and every request should take about two round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, Outcome
from image_gate.facts.registries import AcrLocation, HssLocation, RegistryMapping
from image_gate.facts.resolver import FactResolver

MIRROR = "mirror.example.com"
MAPPING = RegistryMapping.from_dict(
    {
        "huawei": {"registries": [{"host": MIRROR, "region": "cn-north-4"}]},
        "aliyun": {"registries": [{"host": MIRROR, "region": "cn-hangzhou", "instanceId": "cri-bench"}]},
    }
)
DEBIAN = BaseImage(os_name="Debian GNU/Linux", os_version="12", layer_digest="sha256:" + "d" * 64)


@dataclass(frozen=True, slots=True)
class RegistryImage:
    image_id: str
    digest: str | None


@dataclass(frozen=True, slots=True)
class Repository:
    repo_id: str


def digest_of(name: str) -> str:
    return "sha256:" + f"{abs(hash(name)):064x}"[-64:]


class Upstream:
    """Both clouds, answering everything after ``latency`` seconds, counting calls per API."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls: Counter[str] = Counter()

    async def _answer(self, api: str) -> None:
        self.calls[api] += 1
        if self.latency:
            await asyncio.sleep(self.latency)

    async def find_image(
        self, image: ImageReference, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[RegistryImage]:
        await self._answer("ListRegistryImages")
        return Found(RegistryImage(image_id=f"id-{image}", digest=digest_of(image.name)))

    async def base_image(
        self, image: RegistryImage, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[BaseImage]:
        await self._answer("ListImageBasicImage")
        return Found(DEBIAN)

    async def find_repository(
        self, image: ImageReference, location: AcrLocation, *, deadline: Deadline
    ) -> Outcome[Repository]:
        await self._answer("DescribeImageInstances")
        return Found(Repository(repo_id=f"crr-{image.name}"))

    async def registry_digest(self, repository: Repository, tag: str, *, deadline: Deadline) -> Outcome[str]:
        await self._answer("DescribeImage")
        return Found(digest_of(repository.repo_id))


def images(count: int) -> list[ImageReference]:
    return [ImageReference.parse(f"{MIRROR}/team/app-{i}:v{i % 7}") for i in range(count)]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def warm(count: int, rounds: int) -> None:
    upstream = Upstream(latency=0.0)
    resolver = FactResolver(MAPPING, upstream, upstream)
    refs = images(count)
    for ref in refs:
        facts = await resolver.resolve(ref, base_image=True, digest=True, deadline=Deadline.after(3.0))
        assert facts.base_image == Found(DEBIAN), facts
    calls_before = sum(upstream.calls.values())

    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(rounds):
        for ref in refs:
            t0 = time.perf_counter_ns()
            await resolver.resolve(ref, base_image=True, digest=True, deadline=Deadline.after(3.0))
            samples.append((time.perf_counter_ns() - t0) / 1_000)
    elapsed = time.perf_counter() - started
    await resolver.aclose()

    print(f"warm cache, {count} images x {rounds} rounds, resolve(base_image=True, digest=True), sequential:")
    print(f"  p50 {percentile(samples, 0.50):7.1f} us   p99 {percentile(samples, 0.99):7.1f} us   ", end="")
    print(f"mean {statistics.fmean(samples):7.1f} us   {len(samples) / elapsed:,.0f} resolves/s")
    print(f"  upstream calls during the run: {sum(upstream.calls.values()) - calls_before}")


async def cold(latency: float, requests: int = 100, distinct: int = 10) -> None:
    upstream = Upstream(latency=latency)
    resolver = FactResolver(MAPPING, upstream, upstream)
    refs = images(distinct)
    samples: list[float] = []

    async def one(ref: ImageReference) -> None:
        t0 = time.perf_counter()
        facts = await resolver.resolve(ref, base_image=True, digest=True, deadline=Deadline.after(3.0))
        samples.append((time.perf_counter() - t0) * 1_000)
        assert isinstance(facts.base_image, Found), facts
        assert isinstance(facts.registry_digest, Found), facts

    started = time.perf_counter()
    await asyncio.gather(*(one(refs[i % distinct]) for i in range(requests)))
    elapsed = time.perf_counter() - started
    await resolver.aclose()

    print(f"cold cache, burst of {requests} concurrent requests for {distinct} images, ", end="")
    print(f"upstream latency {latency * 1e3:g} ms:")
    print(f"  p50 {percentile(samples, 0.50):6.1f} ms   p99 {percentile(samples, 0.99):6.1f} ms   ", end="")
    print(f"burst done in {elapsed * 1e3:.1f} ms (two round trips: {2 * latency * 1e3:g} ms)")
    print("  upstream calls: " + ", ".join(f"{api} {n}" for api, n in sorted(upstream.calls.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000, help="distinct images in the warm run")
    parser.add_argument("--rounds", type=int, default=20, help="resolves of each image in the warm run")
    parser.add_argument("--latency", type=float, default=0.05, help="fake upstream latency in seconds (cold run)")
    args = parser.parse_args()
    asyncio.run(warm(args.images, args.rounds))
    asyncio.run(cold(args.latency))


if __name__ == "__main__":
    main()
