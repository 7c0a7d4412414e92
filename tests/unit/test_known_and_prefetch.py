"""SharedFacts.known (the index alone, no side effects) and SharedFacts.prefetch (below every admission miss)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Found, NotApplicable
from image_gate.facts.records import FactKey
from image_gate.facts.store import PREFETCH_GROUPS, REQUESTING_NAMESPACE
from tests.factcluster import Cluster, Replica, resolve
from tests.fakeclouds import APP_V1, APP_V2, DEBIAN, DIGEST_A, MAPPING, MIRROR, FakeRegistryImage
from tests.faketime import FakeTime, settle

UNMAPPED = ImageReference.parse("quay.io/team/tool:1.0")
NOWHERE = ImageReference.parse("swr.xx-nowhere-9.myhuaweicloud.com/team/app:v1")


def hss_name(image: ImageReference) -> str:
    return FactKey("huawei", MAPPING.hss_location(image), image).name  # type: ignore[arg-type]


def catalogue(replica: Replica, count: int, *, prefix: str = "svc") -> list[ImageReference]:
    """``count`` more images HSS knows (same digest, so only the lookup of each reference costs a call)."""
    images = [ImageReference.parse(f"{MIRROR}/team/{prefix}{n}:v1") for n in range(count)]
    for n, image in enumerate(images):
        replica.hss.images[str(image)] = Found(FakeRegistryImage(f"{prefix}-{n}", DIGEST_A, "v1"))
    return images


# -- known


async def test_known_answers_from_the_index_only_and_changes_nothing(time: FakeTime, cluster: Cluster) -> None:
    leader, follower = Replica(cluster, time), Replica(cluster, time)
    assert follower.facts.known(APP_V1, base_image=True, digest=True) is None, "nothing stored yet"
    assert cluster.requests == cluster.creates == 0, "and nothing asked for"
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)
    for name, stored in list(cluster.facts.items()):
        cluster.facts[name] = replace(stored, last_used=None, created_at=None)  # a review would record its use
    uses, writes, calls = cluster.uses, cluster.status_writes, leader.cloud_calls
    facts = follower.facts.known(APP_V1, base_image=True, digest=True)
    assert facts is not None
    assert facts.base_image == Found(DEBIAN)
    assert facts.registry_digest == Found(DIGEST_A)
    assert facts.stale == ()
    assert facts.hss_image_id == "id-v1"
    assert follower.facts.known(APP_V1, base_image=False, digest=True) is not None
    await settle()
    assert (cluster.uses, cluster.status_writes, follower.cloud_calls, leader.cloud_calls) == (uses, writes, 0, calls)
    assert follower.facts.known(APP_V2, base_image=True, digest=False) is None, "v2 was never asked for"
    await leader.facts.aclose()


async def test_known_answers_what_needs_no_call_without_a_store(time: FakeTime, cluster: Cluster) -> None:
    replica = Replica(cluster, time)
    unmapped = replica.facts.known(UNMAPPED, base_image=True, digest=True)
    assert unmapped is not None
    assert isinstance(unmapped.base_image, NotApplicable)
    assert isinstance(unmapped.registry_digest, NotApplicable)
    assert unmapped == await replica.resolver.resolve(
        UNMAPPED, base_image=True, digest=True, deadline=time.deadline(1)
    ), "the same words as a lookup"
    refused = replica.facts.known(NOWHERE, base_image=True, digest=False)
    assert refused is not None
    assert isinstance(refused.base_image, NotApplicable)
    assert "xx-nowhere-9" in refused.base_image.detail
    assert cluster.creates == 0


async def test_known_serves_an_expired_fact_stale_until_max_stale_and_never_an_expired_failure(
    time: FakeTime, cluster: Cluster
) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)
    ghost = ImageReference.parse(f"{MIRROR}/team/ghost:v1")
    await resolve(leader, time, ghost)
    await leader.facts.aclose()  # nobody refreshes from here on
    assert leader.facts.known(ghost, base_image=True, digest=False) is not None, "a fresh not-found is an answer"
    await time.advance(301.0)
    stale = leader.facts.known(APP_V1, base_image=True, digest=False)
    assert stale is not None
    assert stale.base_image == Found(DEBIAN)
    assert [fact.fact for fact in stale.stale] == ["base image"]
    assert leader.facts.known(ghost, base_image=True, digest=False) is None, "an expired not-found is asked again"
    await time.advance(3_600.0)
    assert leader.facts.known(APP_V1, base_image=True, digest=False) is None, "too old to stand in"


# -- prefetch


async def test_the_leader_resolves_prefetches_after_every_admission_miss(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time, latency=12.0, workers=1)
    inventory = catalogue(leader, 5, prefix="inv")
    running = catalogue(leader, 2, prefix="run")
    leader.facts.start_leading()
    for image in inventory:
        leader.facts.prefetch(image, base_image=True, digest=False, priority="inventory")
    for image in running:
        leader.facts.prefetch(image, base_image=True, digest=False, priority="running")
    await settle()
    REQUESTING_NAMESPACE.set("team")
    review = asyncio.ensure_future(
        leader.facts.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(60))
    )
    await time.advance(24.0 * 12)
    assert review.result().base_image == Found(DEBIAN)
    order = [image for _, image in leader.hss.find_calls]
    assert order[0] == str(running[0]), "the worker had taken the most urgent prefetch: running workloads' first"
    assert order[1] == str(APP_V1), "the admission miss goes before every other prefetch"
    assert order[2] == str(running[1]), "running workloads before the inventory"
    assert order[3:] == [str(image) for image in inventory]
    for image in (*inventory, *running):
        assert leader.facts.known(image, base_image=True, digest=False) is not None
    await leader.facts.aclose()


async def test_an_admission_miss_promotes_a_queued_prefetch(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time, latency=12.0, workers=1)
    inventory = catalogue(leader, 6, prefix="inv")
    leader.facts.start_leading()
    for image in inventory:
        leader.facts.prefetch(image, base_image=True, digest=False, priority="inventory")
    await settle()
    REQUESTING_NAMESPACE.set("team")
    review = asyncio.ensure_future(
        leader.facts.resolve(inventory[-1], base_image=True, digest=False, deadline=time.deadline(60))
    )
    await time.advance(60.0)
    assert review.result().base_image == Found(DEBIAN)
    order = [image for _, image in leader.hss.find_calls]
    assert order[1] == str(inventory[-1]), "waited for one lookup, not for the whole inventory"
    await leader.facts.aclose()


async def test_a_follower_asks_for_a_prefetch_without_waiting_and_the_leader_queues_it_low(
    time: FakeTime, cluster: Cluster
) -> None:
    leader, follower = Replica(cluster, time, latency=12.0, workers=1), Replica(cluster, time)
    inventory = catalogue(leader, 3, prefix="inv")
    follower.facts.prefetch(inventory[0], base_image=True, digest=True, priority="inventory")
    await settle()
    assert follower.facts.awaited == 0, "nobody waits for a prefetch"
    stored = cluster.facts[hss_name(inventory[0])]
    assert stored.record is None
    assert stored.requested_by == PREFETCH_GROUPS["inventory"], "the leader reads how urgent it is"
    assert cluster.creates == 2, "one ImageFact per cloud"
    for image in inventory[1:]:
        follower.facts.prefetch(image, base_image=True, digest=False, priority="inventory")
    await settle()
    leader.facts.start_leading()
    await settle()
    REQUESTING_NAMESPACE.set("team")
    review = asyncio.ensure_future(
        follower.facts.resolve(inventory[2], base_image=True, digest=False, deadline=time.deadline(60))
    )
    await time.advance(60.0)
    assert review.result().base_image == Found(DEBIAN)
    assert cluster.facts[hss_name(inventory[2])].requested_by == "team", "asked again, as the review's namespace"
    order = [image for _, image in leader.hss.find_calls]
    assert order.index(str(inventory[2])) == 1, "moved up to the admission misses"
    await time.advance(60.0)
    assert follower.cloud_calls == 0
    assert all(follower.facts.known(image, base_image=True, digest=False) for image in inventory)
    await leader.facts.aclose()


async def test_a_prefetch_of_what_is_stored_and_fresh_does_nothing(time: FakeTime, cluster: Cluster) -> None:
    leader, follower = Replica(cluster, time), Replica(cluster, time)
    leader.facts.start_leading()
    await resolve(follower, time, APP_V1)
    requests, calls = cluster.requests, leader.cloud_calls
    for replica in (leader, follower):
        replica.facts.prefetch(APP_V1, base_image=True, digest=True, priority="running")
        replica.facts.prefetch(UNMAPPED, base_image=True, digest=True, priority="running")
        replica.facts.prefetch(NOWHERE, base_image=True, digest=True, priority="running")
    await time.advance(10.0)
    assert (cluster.requests, leader.cloud_calls) == (requests, calls)
    await leader.facts.aclose()


async def test_a_prefetch_never_raises_and_asks_nothing_while_degraded(time: FakeTime, cluster: Cluster) -> None:
    cluster.writable = False
    follower = Replica(cluster, time)
    follower.facts.prefetch(APP_V1, base_image=True, digest=True, priority="running")
    await settle()
    assert follower.facts.degraded, "the create was refused"
    assert cluster.requests == 0
    follower.facts.prefetch(APP_V2, base_image=True, digest=True, priority="running")
    await settle()
    assert follower.cloud_calls == 0, "a replica that is not the leader spends no quota ahead of need"


def test_a_prefetch_outside_an_event_loop_does_not_raise(time: FakeTime, cluster: Cluster) -> None:
    follower = Replica(cluster, time)
    follower.facts.prefetch(APP_V1, base_image=True, digest=True, priority="inventory")
