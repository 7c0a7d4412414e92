"""
Admission latency and upstream calls, over the real clients and cloudsim (HTTP on 127.0.0.1).

Prints, for a Pod of three containers judged by three policies:

* warm cache: p50 / p99 latency of one review and reviews per second (CPU only: no call leaves);
* cold cache: a burst of concurrent reviews of the same Pods (a Deployment's rollout) -- how
  many upstream calls were made per API (single-flight should make it one per image per API),
  and p50 / p99 latency of the burst.

Run from the repository root: ``python -m bench.bench_admission [--reviews N] [--burst N]``. Not a
test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter

from tests.cloudenv import aliyun_sdk_environ, huawei_sdk_environ

from cloudsim.catalogue import Catalogue
from cloudsim.server import SimState, Simulators
from image_gate.app.settings import Settings
from image_gate.app.wiring import fact_resolver
from image_gate.clouds.quota import Rate
from image_gate.core.admission import Admission
from image_gate.core.evaluate import Subject
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container

POLICIES = [
    compile_policy(
        "approved-base-os",
        {
            "match": {"images": ["swr.*.myhuaweicloud.com/**"]},
            "baseImage": {"allowedOS": [{"name": "ubuntu", "versions": [">=20.04"]}, {"name": "debian"}]},
        },
    ),
    compile_policy("pinned-acr", {"match": {"images": ["*.*.cr.aliyuncs.com/**"]}, "digest": {"matchRegistry": True}}),
    compile_policy("no-centos", {"baseImage": {"deniedOS": [{"name": "centos"}]}, "match": {"images": ["swr.**"]}}),
]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def subjects(catalogue: Catalogue) -> list[Subject]:
    swr = [str(i.reference) for i in catalogue.huawei_images() if i.huawei and i.huawei.base_image]
    acr = [f"{i.reference}@{i.digest}" for i in catalogue.aliyun_images()]
    pods = []
    for index in range(max(len(swr), len(acr))):
        images = [swr[index % len(swr)], swr[(index + 1) % len(swr)], acr[index % len(acr)]]
        containers = tuple(Container("container", f"c{n}", image) for n, image in enumerate(images))
        pods.append(Subject("Pod", f"bench/pod-{index}", "bench", {}, containers))
    return pods


async def bench(reviews: int, burst: int) -> None:
    catalogue = Catalogue.load()
    state = SimState(catalogue=catalogue, hss_rate=None)
    with Simulators(catalogue, state=state) as sim:
        environ = {**huawei_sdk_environ(catalogue), **aliyun_sdk_environ(catalogue)}
        # HSS's published quota (5/min per API) would make the 6th distinct image wait a minute and
        # fail the deadline; the bench measures the cache and the clients, so it raises the quota.
        settings = Settings(hss_endpoint=sim.hss_url, sas_endpoint=sim.sas_url, deadline=30.0, hss_rate=Rate(1000, 1.0))
        pods = subjects(catalogue)
        distinct = {c.image for pod in pods for c in pod.containers}
        async with fact_resolver(settings, environ=environ) as resolver:
            admission = Admission(resolver, deadline=30.0)

            started = time.perf_counter()
            cold = await asyncio.gather(*(admission.review(pods[n % len(pods)], POLICIES) for n in range(burst)))
            cold_wall = time.perf_counter() - started
            calls = state.faults.snapshot()

            samples = []
            started = time.perf_counter()
            for n in range(reviews):
                review = await admission.review(pods[n % len(pods)], POLICIES)
                samples.append(review.seconds)
            warm_wall = time.perf_counter() - started
            after = state.faults.snapshot()

    print(f"pods: {len(pods)} distinct, 3 containers each, {len(distinct)} distinct images, {len(POLICIES)} policies")
    print(
        f"cold burst: {burst} concurrent reviews in {cold_wall * 1000:.1f} ms; "
        f"p50 {percentile([r.seconds for r in cold], 0.5) * 1000:.1f} ms, "
        f"p99 {percentile([r.seconds for r in cold], 0.99) * 1000:.1f} ms"
    )
    print("cold burst upstream calls: " + ", ".join(f"{api} {count}" for api, count in sorted(calls.items())))
    print(
        f"warm: {reviews} reviews, p50 {statistics.median(samples) * 1e6:.0f} µs, "
        f"p99 {percentile(samples, 0.99) * 1e6:.0f} µs, {reviews / warm_wall:,.0f} reviews/s (one task)"
    )
    print(f"warm upstream calls: {sum(after.values()) - sum(calls.values())}")
    denied = sum(1 for r in cold if not r.decision.allowed)
    problems = Counter(f.problem for r in cold for f in r.decision.denials)
    print(
        f"verdicts in the burst: {burst - denied} allowed, {denied} denied "
        f"({problems['violation']} violations, {problems['unresolved']} lookup failures)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reviews", type=int, default=5000)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(bench(args.reviews, args.burst))


if __name__ == "__main__":
    main()
