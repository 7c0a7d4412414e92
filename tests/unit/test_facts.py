"""FactResolver on a fake clock, against fakes of the cloud clients (the real ones are tested against cloudsim)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from image_gate.app.metrics import Metrics
from image_gate.core.imagefacts import ImageFacts, StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Found, NotApplicable, NotFound, TimedOut, Unauthorized, Unavailable
from image_gate.facts.breaker import BreakerSettings, BreakerState
from image_gate.facts.resolver import CacheSettings, FactResolver
from tests.fakeclouds import (
    APP_V1,
    APP_V2,
    DEBIAN,
    DIGEST_A,
    MAPPING,
    MIRROR,
    FakeHss,
    FakeRegistryImage,
    FakeSas,
    known,
)
from tests.faketime import FakeTime, settle


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def resolver(time: FakeTime, hss: FakeHss, sas: FakeSas) -> Any:
    known(hss, sas)
    resolver = FactResolver(MAPPING, hss, sas, clock=time, sleep=time.sleep)
    yield resolver
    await resolver.aclose()


async def resolve_both(resolver: FactResolver, image: ImageReference, time: FakeTime, within: float = 3) -> ImageFacts:
    return await resolver.resolve(image, base_image=True, digest=True, deadline=time.deadline(within))


async def test_both_facts_resolved(resolver: FactResolver, time: FakeTime) -> None:
    facts = await resolve_both(resolver, APP_V1, time)
    assert facts == ImageFacts(base_image=Found(DEBIAN), registry_digest=Found(DIGEST_A))


async def test_the_two_clouds_are_asked_concurrently(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas
) -> None:
    hss.latency = sas.latency = 1.0  # every cloud call takes one second
    request = asyncio.create_task(resolve_both(resolver, APP_V1, time, within=10))
    await time.advance(1.999)
    assert not request.done()
    await time.advance(0.001)
    # Two steps of one second on each side: two seconds in all, not four.
    assert request.done()
    assert request.result() == ImageFacts(base_image=Found(DEBIAN), registry_digest=Found(DIGEST_A))
    assert [t - 1_000 for t, _ in hss.find_calls + sas.find_calls] == [0, 0]
    assert [t - 1_000 for t, _ in hss.base_calls + sas.digest_calls] == [1, 1]


async def test_only_the_facts_asked_for(resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas) -> None:
    only_base = await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    only_digest = await resolver.resolve(APP_V2, base_image=False, digest=True, deadline=time.deadline(3))
    neither = await resolver.resolve(APP_V1, base_image=False, digest=False, deadline=time.deadline(3))
    assert only_base == ImageFacts(base_image=Found(DEBIAN))
    assert only_digest == ImageFacts(registry_digest=Found(DIGEST_A))
    assert neither == ImageFacts()
    assert [tag for _, tag in hss.find_calls] == [str(APP_V1)]
    assert [tag for _, tag in sas.digest_calls] == ["v2"]


async def test_a_warm_resolve_makes_no_calls(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas
) -> None:
    await resolve_both(resolver, APP_V1, time)
    await time.advance(60)
    assert await resolve_both(resolver, APP_V1, time) == ImageFacts(
        base_image=Found(DEBIAN), registry_digest=Found(DIGEST_A)
    )
    assert (len(hss.find_calls), len(hss.base_calls), len(sas.find_calls), len(sas.digest_calls)) == (1, 1, 1, 1)


async def test_a_hundred_concurrent_requests_make_one_call_per_api(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas
) -> None:
    hss.latency = sas.latency = 0.5
    requests = [asyncio.create_task(resolve_both(resolver, APP_V1, time)) for _ in range(100)]
    await time.advance(1)
    assert all(r.done() for r in requests)
    assert {r.result().base_image for r in requests} == {Found(DEBIAN)}
    assert (len(hss.find_calls), len(hss.base_calls), len(sas.find_calls), len(sas.digest_calls)) == (1, 1, 1, 1)


async def test_the_base_image_is_shared_by_every_tag_of_a_digest(
    resolver: FactResolver, time: FakeTime, hss: FakeHss
) -> None:
    v1 = await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    v2 = await resolver.resolve(APP_V2, base_image=True, digest=False, deadline=time.deadline(3))
    assert v1.base_image == v2.base_image == Found(DEBIAN)
    assert len(hss.find_calls) == 2  # tag -> image: one call per tag
    assert len(hss.base_calls) == 1  # digest -> base image: one call per digest


async def test_the_base_image_by_digest_outlives_the_tag_ttl(
    resolver: FactResolver, time: FakeTime, hss: FakeHss
) -> None:
    await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    await time.advance(7 * 86_400)
    await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    assert len(hss.find_calls) == 2
    assert len(hss.base_calls) == 1


async def test_the_acr_repository_is_shared_by_every_tag(resolver: FactResolver, time: FakeTime, sas: FakeSas) -> None:
    await resolver.resolve(APP_V1, base_image=False, digest=True, deadline=time.deadline(3))
    await resolver.resolve(APP_V2, base_image=False, digest=True, deadline=time.deadline(3))
    assert len(sas.find_calls) == 1
    assert [tag for _, tag in sas.digest_calls] == ["v1", "v2"]


async def test_the_tag_ttl_applies_to_tag_lookups(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas
) -> None:
    await resolve_both(resolver, APP_V1, time)
    await time.advance(CacheSettings().tag_ttl)
    await resolve_both(resolver, APP_V1, time)
    assert (len(hss.find_calls), len(hss.base_calls), len(sas.find_calls), len(sas.digest_calls)) == (2, 1, 1, 2)


async def test_a_pinned_reference_is_looked_up_by_digest_for_long(
    resolver: FactResolver, time: FakeTime, hss: FakeHss
) -> None:
    pinned = ImageReference.parse(f"{MIRROR}/team/app:v1@{DIGEST_A}")
    other_tag = ImageReference.parse(f"{MIRROR}/team/app:v9@{DIGEST_A}")
    hss.images[str(pinned)] = Found(FakeRegistryImage("id-v1", DIGEST_A, "v1"))
    await resolver.resolve(pinned, base_image=True, digest=False, deadline=time.deadline(3))
    await time.advance(CacheSettings().tag_ttl * 10)
    facts = await resolver.resolve(other_tag, base_image=True, digest=False, deadline=time.deadline(3))
    assert facts.base_image == Found(DEBIAN)
    assert len(hss.find_calls) == 1


async def test_a_non_found_first_step_is_the_answer(resolver: FactResolver, time: FakeTime, hss: FakeHss) -> None:
    unknown = ImageReference.parse(f"{MIRROR}/team/unknown:v1")
    facts = await resolve_both(resolver, unknown, time)
    assert facts.base_image == NotFound(f"HSS does not know {unknown}")
    assert facts.registry_digest == NotFound(f"no repository {unknown.name}")
    assert hss.base_calls == []


async def test_images_no_mapping_sends_to_a_cloud_are_not_applicable(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas
) -> None:
    facts = await resolve_both(resolver, ImageReference.parse("nginx:1.27"), time)
    assert facts == ImageFacts(
        base_image=NotApplicable("no registry mapping sends docker.io to Huawei HSS"),
        registry_digest=NotApplicable("no registry mapping sends docker.io to Alibaba Cloud ACR"),
    )
    assert hss.find_calls == sas.find_calls == []


async def test_without_credentials_the_facts_are_unauthorized(time: FakeTime) -> None:
    resolver = FactResolver(MAPPING, None, None, clock=time, sleep=time.sleep)
    facts = await resolve_both(resolver, APP_V1, time)
    assert facts.base_image == Unauthorized(
        cloud="huawei", api="-", detail="no Huawei Cloud credentials are configured"
    )
    assert facts.registry_digest == Unauthorized(
        cloud="aliyun", api="-", detail="no Alibaba Cloud credentials are configured"
    )
    await resolver.aclose()


async def test_a_digest_only_reference_has_no_registry_digest_to_compare(time: FakeTime) -> None:
    resolver = FactResolver(MAPPING, None, None, clock=time, sleep=time.sleep)
    digest_only = ImageReference.parse(f"{MIRROR}/team/app@{DIGEST_A}")
    facts = await resolver.resolve(digest_only, base_image=False, digest=True, deadline=time.deadline(3))
    # Not applicable even without credentials: there is nothing to ask.
    assert facts.registry_digest == NotApplicable(f"{digest_only} names no tag to compare with the registry")


async def test_a_slow_chain_times_out_for_the_caller_and_completes_for_the_retry(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas
) -> None:
    hss.latency = 5.0  # each HSS call takes longer than the whole request may
    first = asyncio.create_task(resolve_both(resolver, APP_V1, time, within=3))
    await time.advance(3)
    facts = first.result()
    assert isinstance(facts.base_image, TimedOut)
    assert facts.registry_digest == Found(DIGEST_A)  # the other cloud is not held up

    # Nobody waits any more, yet step two starts as soon as step one ends, and both fill the caches.
    await time.advance(7)
    assert [t - 1_000 for t, _ in hss.base_calls] == [5]
    retry = await resolve_both(resolver, APP_V1, time, within=3)
    assert retry == ImageFacts(base_image=Found(DEBIAN), registry_digest=Found(DIGEST_A))
    assert (len(hss.find_calls), len(hss.base_calls)) == (1, 1)


async def test_stale_facts_are_answered_and_marked_when_a_cloud_fails(
    resolver: FactResolver, time: FakeTime, hss: FakeHss
) -> None:
    await resolve_both(resolver, APP_V1, time)
    await time.advance(CacheSettings().tag_ttl + 1)
    outage = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    hss.images[str(APP_V1)] = outage
    facts = await resolve_both(resolver, APP_V1, time)
    assert facts.base_image == Found(DEBIAN)
    assert facts.registry_digest == Found(DIGEST_A)  # refreshed: fresh
    # The tag's step is as old as the TTL and the second; the digest's step (kept forever) is fresh.
    assert facts.stale == (StaleFact("base image", age=CacheSettings().tag_ttl + 1, because=(outage,)),)


async def test_a_failure_reached_through_a_stale_step_is_not_marked_stale(
    resolver: FactResolver, time: FakeTime, hss: FakeHss
) -> None:
    hss.bases[DIGEST_A] = NotFound("not scanned yet")
    await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    await time.advance(CacheSettings().tag_ttl + 1)
    # Step one answers stale (HSS list fails); step two has no fact to fall back on and fails too.
    hss.images[str(APP_V1)] = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    hss.bases[DIGEST_A] = Unavailable(cloud="huawei", api="ListImageBasicImage", detail="503")
    facts = await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    assert facts.base_image == hss.bases[DIGEST_A]
    assert facts.stale == ()


async def test_the_breaker_stops_calls_to_a_failing_cloud(time: FakeTime, hss: FakeHss, sas: FakeSas) -> None:
    known(hss, sas)
    states: list[tuple[str, BreakerState]] = []

    class Observer:
        def __getattr__(self, name: str) -> Any:
            if name == "breaker_state":
                return lambda *, cloud, state: states.append((cloud, state))
            return lambda **_: None

    resolver = FactResolver(
        MAPPING,
        hss,
        sas,
        breakers=BreakerSettings(failure_threshold=2, cool_down=30),
        clock=time,
        sleep=time.sleep,
        observer=Observer(),
    )
    down = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    for tag in ("a", "b", "c"):
        hss.images[f"{MIRROR}/team/app:{tag}"] = down
    for tag in ("a", "b"):
        facts = await resolve_both(resolver, ImageReference.parse(f"{MIRROR}/team/app:{tag}"), time)
        assert facts.base_image == down
    # Each cloud's starting state first (so a gauge has a value before any outage), then the change.
    assert states == [
        ("huawei", BreakerState.CLOSED),
        ("aliyun", BreakerState.CLOSED),
        ("huawei", BreakerState.OPEN),
    ]

    facts = await resolve_both(resolver, ImageReference.parse(f"{MIRROR}/team/app:c"), time)
    assert isinstance(facts.base_image, Unavailable)
    assert facts.base_image.detail.startswith("circuit open after 2 consecutive failures")
    assert len(hss.find_calls) == 2
    assert facts.registry_digest is not None  # the other cloud has its own breaker
    assert resolver.breakers[1].state is BreakerState.CLOSED
    await resolver.aclose()


async def test_the_breaker_gauge_is_fed_from_the_start(time: FakeTime, hss: FakeHss, sas: FakeSas) -> None:
    known(hss, sas)
    metrics = Metrics()
    settings = BreakerSettings(failure_threshold=1, cool_down=30)
    resolver = FactResolver(MAPPING, hss, sas, breakers=settings, clock=time, sleep=time.sleep, observer=metrics)
    page = metrics.render().decode()
    assert 'image_gate_circuit_breaker_open{cloud="huawei"} 0.0' in page
    assert 'image_gate_circuit_breaker_open{cloud="aliyun"} 0.0' in page
    hss.images[str(APP_V1)] = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    assert 'image_gate_circuit_breaker_open{cloud="huawei"} 1.0' in metrics.render().decode()
    await resolver.aclose()


async def test_aclose_cancels_lookups_in_flight(time: FakeTime, hss: FakeHss, sas: FakeSas) -> None:
    known(hss, sas)
    hss.gate = asyncio.Event()
    resolver = FactResolver(MAPPING, hss, sas, clock=time, sleep=time.sleep)
    request = asyncio.create_task(resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3)))
    await settle()
    await resolver.aclose()
    facts = await request
    assert isinstance(facts.base_image, Unavailable)
    assert "shutting down" in facts.base_image.detail
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and "image-gate" in t.get_name()] == []


async def test_a_cancelled_request_leaves_the_shared_lookups_running(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, sas: FakeSas
) -> None:
    hss.latency = sas.latency = 1.0
    request = asyncio.create_task(resolve_both(resolver, APP_V1, time, within=10))
    await settle()
    request.cancel()
    await settle()
    assert request.cancelled()
    await time.advance(2)
    facts = await resolve_both(resolver, APP_V1, time, within=0)
    assert facts == ImageFacts(base_image=Found(DEBIAN), registry_digest=Found(DIGEST_A))
    assert (len(hss.find_calls), len(hss.base_calls), len(sas.find_calls), len(sas.digest_calls)) == (1, 1, 1, 1)


@pytest.mark.parametrize(
    "options",
    [
        {"tag_ttl": 0},
        {"negative_ttl": 600},
        {"max_stale": 60},
        {"digest_ttl": -1},
        {"refresh_ahead": 1.5},
    ],
)
def test_nonsense_cache_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="CacheSettings"):
        CacheSettings(**options)
