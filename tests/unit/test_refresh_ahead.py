"""Used tag facts are refreshed by the leader before they expire, past the in-process caches, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, Unavailable
from image_gate.facts.records import FactKey
from image_gate.facts.store import REQUESTING_NAMESPACE, StoreSettings
from image_gate.facts.upkeep import UpkeepSettings
from tests.factcluster import Cluster, Replica, resolve
from tests.fakeclouds import APP_V1, DEBIAN, DIGEST_A, DIGEST_B, MAPPING, MIRROR, FakeRegistryImage
from tests.faketime import FakeTime
from tests.unit.test_cache import Upstream, make_cache

TAG_TTL = 300.0
UBUNTU = BaseImage(os_name="Ubuntu", os_version="24.04", layer_digest="sha256:" + "e" * 64)


def with_upkeep(replica: Replica, **upkeep: float) -> Replica:
    settings = UpkeepSettings(interval=5.0, **upkeep)  # type: ignore[arg-type]
    replica.facts.settings = StoreSettings(tag_ttl=TAG_TTL, upkeep=settings)
    return replica


def stored_outcome(cluster: Cluster) -> object:
    record = cluster.facts[FactKey("huawei", MAPPING.hss_location(APP_V1), APP_V1).name].record  # type: ignore[arg-type]
    return record.outcome if record is not None else None


def stored(cluster: Cluster, cloud: str) -> tuple[float, float | None]:
    location = MAPPING.hss_location(APP_V1) if cloud == "huawei" else MAPPING.acr_location(APP_V1)
    record = cluster.facts[FactKey(cloud, location, APP_V1).name].record  # type: ignore[arg-type]
    assert record is not None
    return record.observed_at, record.expires_at


# -- the cache and the resolver: a fresh lookup


async def test_a_fresh_get_asks_again_whatever_the_cache_holds(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(100.0)
    upstream.outcome = Found("v2")
    assert (await cache.get("k", upstream.fetch, deadline=time.deadline(3))).outcome == Found("v1"), "a hit"
    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(3), fresh=True)
    assert answer.outcome == Found("v2")
    assert not answer.stale
    assert len(upstream.calls) == 2


async def test_a_failed_fresh_get_says_the_cached_found_is_stale(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(100.0)
    upstream.outcome = Unavailable(cloud="huawei", api="ListRegistryImages", detail="down")
    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(3), fresh=True)
    assert answer.outcome == Found("v1"), "it still stands in"
    assert answer.stale, "but not as a fact fetched now"
    assert answer.age == pytest.approx(100.0)


async def test_a_fresh_resolve_asks_for_the_tag_again_but_not_the_digest(time: FakeTime, cluster: Cluster) -> None:
    replica = Replica(cluster, time)
    resolver = replica.resolver
    await resolver.resolve(APP_V1, base_image=True, digest=True, deadline=time.deadline(3))
    calls = (len(replica.hss.find_calls), len(replica.hss.base_calls), len(replica.sas.find_calls))
    assert len(replica.sas.digest_calls) == 1
    replica.sas.digests[next(iter(replica.sas.digests))] = Found(DIGEST_B)  # the tag was pushed again
    cached = await resolver.resolve(APP_V1, base_image=True, digest=True, deadline=time.deadline(3))
    assert cached.registry_digest == Found(DIGEST_A), "the cache answers as before"
    fresh = await resolver.resolve(APP_V1, base_image=True, digest=True, deadline=time.deadline(3), fresh=True)
    assert fresh.registry_digest == Found(DIGEST_B)
    assert fresh.base_image == Found(DEBIAN)
    assert len(replica.hss.find_calls) == calls[0] + 1, "which image the tag names: asked again"
    assert len(replica.sas.digest_calls) == 2, "the tag's digest: asked again"
    assert len(replica.hss.base_calls) == calls[1], "a digest's base image never changes"
    assert len(replica.sas.find_calls) == calls[2], "nor does a repository's id"


# -- the leader's upkeep


async def test_a_used_fact_is_refreshed_before_it_expires(time: FakeTime, cluster: Cluster) -> None:
    leader = with_upkeep(Replica(cluster, time), hss_refreshes_per_minute=6.0)
    follower = Replica(cluster, time)
    leader.facts.start_leading()
    await resolve(follower, time, APP_V1)
    observed, expires = stored(cluster, "huawei")
    assert expires == pytest.approx(observed + TAG_TTL)
    finds = len(leader.hss.find_calls)
    await time.advance(TAG_TTL * 0.85 - 5.0)
    assert len(leader.hss.find_calls) == finds, "not before the last 15 % of the TTL"
    assert stored(cluster, "huawei")[0] == observed
    leader.hss.images[str(APP_V1)] = Found(FakeRegistryImage("id-v1b", DIGEST_B, "v1"))  # the tag pushed again
    leader.hss.bases[DIGEST_B] = Found(UBUNTU)
    await time.advance(15.0)
    assert len(leader.hss.find_calls) == finds + 1
    refreshed, later = stored(cluster, "huawei")
    assert observed < refreshed < expires, "refreshed ahead of expiry"
    assert later == pytest.approx(refreshed + TAG_TTL)
    assert stored_outcome(cluster) == Found(UBUNTU), "asked the cloud, past the resolver's still fresh cache"
    await time.advance(expires - time.now + 1.0)  # past the old expiry
    facts = await follower.facts.resolve(APP_V1, base_image=True, digest=True, deadline=time.deadline(0))
    assert facts.base_image == Found(UBUNTU)
    assert facts.registry_digest == Found(DIGEST_A)
    assert facts.stale == (), "nobody waited, nobody was answered stale"
    await leader.facts.aclose()


async def test_an_unused_fact_is_left_to_expire(time: FakeTime, cluster: Cluster) -> None:
    leader = with_upkeep(Replica(cluster, time), hss_refreshes_per_minute=6.0, refresh_if_used_within=60.0)
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)
    calls = leader.cloud_calls
    await time.advance(TAG_TTL * 2)
    assert leader.cloud_calls == calls, "nobody used it within the last minute: not worth the quota"
    await leader.facts.aclose()


async def test_refreshes_wait_for_every_admission_miss(time: FakeTime, cluster: Cluster) -> None:
    leader = with_upkeep(Replica(cluster, time, latency=10.0, workers=1), hss_refreshes_per_minute=60.0)
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1, seconds=30.0)
    await time.advance(TAG_TTL * 0.85 - 60.0)
    flood = [f"{MIRROR}/flood/bogus{n}:v1" for n in range(8)]
    REQUESTING_NAMESPACE.set("flood")
    reviews = [
        asyncio.ensure_future(
            leader.facts.resolve(
                ImageReference.parse(image), base_image=True, digest=False, deadline=time.deadline(200)
            )
        )
        for image in flood
    ]
    await time.advance(200.0)
    assert all(review.done() for review in reviews)
    order = [image for _, image in leader.hss.find_calls]
    first_refresh = order.index(str(APP_V1), 1)
    assert first_refresh > max(order.index(image) for image in flood), "the refresh came after every miss"
    assert stored(cluster, "huawei")[0] > 1_800_000_000.0 + TAG_TTL * 0.85 - 60.0
    await leader.facts.aclose()


def test_refresh_ahead_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="refresh_ahead"):
        UpkeepSettings(refresh_ahead=1.0)
