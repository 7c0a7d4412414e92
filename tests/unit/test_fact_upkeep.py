"""The leader's upkeep on a fake clock: use recorded daily, refresh within a quota share, unused deleted, a cap."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Found
from image_gate.facts.store import StoreSettings
from image_gate.facts.upkeep import DAY, UpkeepSettings
from tests.factcluster import Cluster, Replica, resolve
from tests.fakeclouds import APP_V1, DEBIAN, MIRROR, FakeRegistryImage
from tests.faketime import FakeTime

TAG_TTL = 300.0


def with_upkeep(replica: Replica, **upkeep: float) -> Replica:
    replica.facts.settings = StoreSettings(tag_ttl=TAG_TTL, upkeep=UpkeepSettings(**upkeep))  # type: ignore[arg-type]
    return replica


async def test_use_is_recorded_at_most_once_a_day(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)
    for _ in range(20):
        await resolve(leader, time, APP_V1, seconds=0.0)
    assert cluster.uses == 2, "once for each fact, not once per review"
    await time.advance(DAY)
    await resolve(leader, time, APP_V1, seconds=0.0)
    assert cluster.uses == 4
    await leader.facts.aclose()


async def test_an_expired_fact_answers_at_once_marked_stale_while_it_is_refreshed(
    time: FakeTime, cluster: Cluster
) -> None:
    leader = with_upkeep(Replica(cluster, time), hss_refreshes_per_minute=0.0, acr_refreshes_per_minute=0.0)
    follower = Replica(cluster, time)
    leader.facts.start_leading()
    await resolve(follower, time, APP_V1)
    calls = leader.cloud_calls
    await time.advance(301.0)
    assert leader.cloud_calls == calls, "upkeep refreshes nothing here: the review asks"
    task = asyncio.ensure_future(
        follower.facts.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    )
    await asyncio.sleep(0)
    assert task.done(), "no waiting for the leader"
    facts = task.result()
    assert facts.base_image == Found(DEBIAN)
    assert [stale.fact for stale in facts.stale] == ["base image"]
    await time.advance(1.0)
    assert leader.cloud_calls > calls, "refreshed by the leader"
    again = await follower.facts.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(0))
    assert again.stale == ()
    await leader.facts.aclose()


async def test_refreshes_take_only_a_share_of_the_hss_quota(time: FakeTime, cluster: Cluster) -> None:
    leader = with_upkeep(Replica(cluster, time), hss_refreshes_per_minute=1.0, interval=5.0)
    images = [ImageReference.parse(f"{MIRROR}/team/svc{n}:v1") for n in range(5)]
    for n, image in enumerate(images):
        leader.hss.images[str(image)] = Found(FakeRegistryImage(f"id-{n}", "sha256:" + "a" * 64, "v1"))
    leader.facts.start_leading()
    for image in images:
        task = asyncio.ensure_future(
            leader.facts.resolve(image, base_image=True, digest=False, deadline=time.deadline(3))
        )
        await time.advance(3.0)
        assert task.result().base_image == Found(DEBIAN)
    finds = len(leader.hss.find_calls)
    await time.advance(TAG_TTL * 0.85 - 20.0)
    assert len(leader.hss.find_calls) == finds, "nothing is due before the last 15 % of the TTL"
    await time.advance(100.0)
    refreshed = len(leader.hss.find_calls) - finds
    assert 1 <= refreshed <= 2, f"about one HSS refresh a minute, not all five at once ({refreshed})"
    await time.advance(300.0)
    assert len(leader.hss.find_calls) - finds >= 5, "all of them in the end"
    await leader.facts.aclose()


async def test_unused_facts_are_deleted_and_the_cap_is_reported(time: FakeTime, cluster: Cluster) -> None:
    leader = with_upkeep(
        Replica(cluster, time), unused_after=30 * DAY, max_facts=2, sweep_every=3600.0, interval=3600.0
    )
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)  # two facts: base image and digest
    await time.advance(3600.0)  # the next sweep
    assert leader.metrics.cap[-1] == (2, True)
    assert cluster.events == ["ImageFactCapReached"]
    # Past the cap, a new image is resolved in-process: no ImageFact is created for it.
    creates = cluster.creates
    other = ImageReference.parse(f"{MIRROR}/team/app:v2")
    facts = await resolve(leader, time, other)
    assert facts.base_image == Found(DEBIAN)
    assert cluster.creates == creates
    # Nobody uses APP_V1 for 30 days: the next sweep deletes its facts.
    for name, stored in list(cluster.facts.items()):
        cluster.facts[name] = replace(stored, last_used=time.now)
    await time.advance(31 * DAY)
    assert cluster.facts == {}
    assert leader.metrics.deleted == 2
    assert leader.metrics.cap[-1] == (0, False)
    await leader.facts.aclose()
