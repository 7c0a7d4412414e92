"""SharedFacts on a fake clock: replicas sharing ImageFacts through an in-memory API server and watch."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Found, NotApplicable, NotFound, TimedOut, Unauthorized
from image_gate.facts.calllog import Handover
from image_gate.facts.records import FactKey, FactRecord, StoredFact, status_of
from image_gate.facts.regions import HSS_REGIONS, RegionAllowList
from image_gate.facts.resolver import FactResolver
from image_gate.facts.store import REQUESTING_NAMESPACE, StoreSettings, WriteResult
from image_gate.facts.upkeep import UpkeepSettings
from tests.factcluster import Backend, Cluster, Replica, resolve
from tests.fakeclouds import APP_V1, APP_V2, DEBIAN, DIGEST_A, MAPPING, MIRROR
from tests.faketime import FakeTime, settle


async def test_a_miss_on_a_follower_is_resolved_once_by_the_leader(time: FakeTime, cluster: Cluster) -> None:
    leader, follower = Replica(cluster, time), Replica(cluster, time)
    leader.facts.start_leading()
    facts = await resolve(follower, time, APP_V1)
    assert facts.base_image == Found(DEBIAN)
    assert facts.registry_digest == Found(DIGEST_A)
    assert follower.cloud_calls == 0, "only the leader calls the clouds"
    assert leader.cloud_calls == 4, "one call per API"
    assert cluster.creates == 2
    assert follower.metrics.waited == ["Found", "Found"]
    # Warm, on both replicas: a dict read, no call, no write.
    for replica in (leader, follower):
        again = await resolve(replica, time, APP_V1, seconds=0.0)
        assert again.base_image == Found(DEBIAN)
    assert leader.cloud_calls == 4
    assert cluster.creates == 2
    assert cluster.status_writes == 2


async def test_the_leader_stores_the_id_hss_knows_each_image_by(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    for image, image_id in ((APP_V1, "id-v1"), (APP_V2, "id-v2")):
        direct = await leader.resolver.resolve(image, base_image=True, digest=False, deadline=time.deadline(3.0))
        assert direct.hss_image_id == image_id, "the resolver tells which HSS image it found"
        await resolve(leader, time, image)
        stored = cluster.facts[FactKey("huawei", MAPPING.hss_location(image), image).name]  # type: ignore[arg-type]
        assert stored.record is not None
        # v2 shares v1's base image (same digest, one basic-image call), never its HSS id.
        assert stored.record.hss_image_id == image_id
    acr = cluster.facts[FactKey("aliyun", MAPPING.acr_location(APP_V1), APP_V1).name]  # type: ignore[arg-type]
    assert acr.record is not None
    assert acr.record.hss_image_id is None


async def test_a_refused_credential_reaches_pods_and_the_cluster_without_who_image_gate_is(
    time: FakeTime, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    leader, follower = Replica(cluster, time), Replica(cluster, time)
    leader.facts.start_leading()
    locked = ImageReference.parse(f"{MIRROR}/team/locked:v1")
    identity = "IAM user gate-reader of account 0a1b2c3d4e"
    leader.hss.images[str(locked)] = Unauthorized(
        cloud="huawei", api="ListRegistryImages", detail=f"{identity} may not list images", request_id="r-9"
    )
    with caplog.at_level(logging.WARNING, logger="image_gate.facts.shared"):
        facts = await resolve(follower, time, locked)
    refused = facts.base_image
    assert isinstance(refused, Unauthorized)
    assert "gate-reader" not in refused.public_message
    stored = cluster.facts[FactKey("huawei", MAPPING.hss_location(locked), locked).name]  # type: ignore[arg-type]
    assert stored.record is not None
    assert "gate-reader" not in str(status_of(stored.record)), "what the API server would keep"
    assert identity in caplog.text, "the whole detail is in the leader's log"


async def test_a_replica_that_starts_knows_every_stored_fact(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)
    calls = leader.cloud_calls
    # Both replicas restart: new processes, same cluster.
    cluster.watchers.clear()
    fresh_leader, fresh_follower = Replica(cluster, time), Replica(cluster, time)
    fresh_leader.facts.start_leading(Handover())
    for replica in (fresh_leader, fresh_follower):
        facts = await resolve(replica, time, APP_V1, seconds=0.0)
        assert facts.base_image == Found(DEBIAN)
        assert facts.registry_digest == Found(DIGEST_A)
    assert fresh_leader.cloud_calls + fresh_follower.cloud_calls == 0
    assert calls == 4


async def test_without_a_leader_the_review_times_out_and_asks_only_once(time: FakeTime, cluster: Cluster) -> None:
    follower = Replica(cluster, time)
    for _ in range(3):
        facts = await resolve(follower, time, APP_V1)
        assert isinstance(facts.base_image, TimedOut)
        assert facts.base_image.api == "ImageFact"
    assert cluster.creates == 2
    assert cluster.requests == 2, "asked once per fact, not once per review"
    assert follower.cloud_calls == 0
    # A leader appears: it finds the pending facts in the cluster, and the next review is warm.
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    await time.advance(1.0)
    facts = await resolve(follower, time, APP_V1, seconds=0.0)
    assert facts.base_image == Found(DEBIAN)


async def test_a_fact_nobody_answers_is_forgotten_when_its_reviews_give_up(time: FakeTime, cluster: Cluster) -> None:
    follower = Replica(cluster, time)
    for n in range(20):
        image = ImageReference.parse(f"{MIRROR}/team/never{n}:v1")
        facts = await resolve(follower, time, image)
        assert isinstance(facts.base_image, TimedOut)
    assert follower.facts.awaited == 0, "no leader answered; nothing is kept waiting for it"


async def test_a_review_that_gives_up_does_not_drop_the_answer_another_waits_for(
    time: FakeTime, cluster: Cluster
) -> None:
    follower = Replica(cluster, time)

    def review(seconds: float) -> asyncio.Future[ImageFacts]:
        return asyncio.ensure_future(
            follower.facts.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(seconds))
        )

    impatient, patient = review(1.0), review(10.0)
    await time.advance(2.0)
    assert isinstance(impatient.result().base_image, TimedOut)
    assert follower.facts.awaited == 1, "the patient review still waits"
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    await time.advance(1.0)
    assert patient.result().base_image == Found(DEBIAN)
    assert follower.facts.awaited == 0


async def test_a_drained_namespace_leaves_the_pending_metric(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time, latency=1.0)
    leader.facts.start_leading()
    for namespace, image in (("team-a", APP_V1), ("team-b", APP_V2)):
        REQUESTING_NAMESPACE.set(namespace)
        await resolve(leader, time, image, seconds=5.0)
    reported = leader.metrics.pending
    assert any(counts.get("team-a") for counts in reported), "team-a's lookups were counted while pending"
    assert reported[-1] == {}, "and once drained, no namespace is reported, not even with 0"
    assert all(0 not in counts.values() for counts in reported)


async def test_not_found_is_stored_for_the_negative_ttl(time: FakeTime, cluster: Cluster) -> None:
    leader, follower = Replica(cluster, time), Replica(cluster, time)
    leader.facts.start_leading()
    ghost = ImageReference.parse(f"{MIRROR}/team/ghost:v1")
    facts = await resolve(follower, time, ghost)
    assert isinstance(facts.base_image, NotFound)
    calls = leader.cloud_calls
    for _ in range(5):
        await resolve(follower, time, ghost, seconds=1.0)
    assert leader.cloud_calls == calls, "repeats within the negative TTL cost nothing"
    await time.advance(30.0)
    await resolve(follower, time, ghost)
    assert leader.cloud_calls > calls, "asked again once it expired and somebody needed it"


async def test_an_unwritable_store_degrades_to_in_process_lookups(time: FakeTime, cluster: Cluster) -> None:
    cluster.writable = False
    follower = Replica(cluster, time)
    facts = await resolve(follower, time, APP_V2)
    assert facts.base_image == Found(DEBIAN)
    assert follower.cloud_calls == 4, "degraded: this replica calls the clouds itself"
    assert follower.metrics.degraded
    assert follower.facts.degraded
    await time.advance(31.0)
    assert not follower.facts.degraded, "the store is tried again later"


async def test_a_flooding_namespace_does_not_starve_another(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time, latency=12.0, workers=1)
    leader.facts.start_leading()
    flood = [ImageReference.parse(f"{MIRROR}/flood/bogus{n}:v1") for n in range(50)]
    REQUESTING_NAMESPACE.set("flood")
    tasks = [
        asyncio.ensure_future(leader.facts.resolve(i, base_image=True, digest=False, deadline=time.deadline(3)))
        for i in flood
    ]
    await settle()
    REQUESTING_NAMESPACE.set("team")
    mine = asyncio.ensure_future(
        leader.facts.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(60))
    )
    await time.advance(60.0)
    assert mine.done()
    assert mine.result().base_image == Found(DEBIAN)
    order = [image for _, image in leader.hss.find_calls]
    assert order.index(str(APP_V1)) <= 1, "served after at most one lookup of the flood"
    assert leader.metrics.pending[-1]["flood"] > 40
    for task in tasks:
        task.cancel()
    await leader.facts.aclose()
    assert leader.metrics.pending[-1] == {}, "a replica that stops leading reports nothing pending"


async def test_a_new_leader_waits_out_its_predecessors_hss_window(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading(Handover(last_calls={"huawei/ListRegistryImages": time.now - 10.0}))
    task = asyncio.ensure_future(
        leader.facts.resolve(APP_V1, base_image=True, digest=True, deadline=time.deadline(120))
    )
    await time.advance(5.0)
    assert leader.hss.find_calls == []
    assert len(leader.sas.find_calls) == 1, "SAS has no published quota: no need to wait"
    await time.advance(60.0)
    assert leader.hss.find_calls[0][0] == pytest.approx(1_800_000_053.0)
    assert task.result().base_image == Found(DEBIAN)


async def test_a_stale_write_is_refused(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)
    backend = cluster.backend()
    key = FactKey("huawei", MAPPING.hss_location(APP_V1), APP_V1)  # type: ignore[arg-type]
    old = cluster.facts[key.name]
    newer = FactRecord(Found(DEBIAN), observed_at=time.now + 1, expires_at=time.now + 301)
    assert await backend.write(key, newer, previous=old) == "written"
    deposed = FactRecord(NotFound("gone"), observed_at=time.now, expires_at=time.now + 30)
    assert await backend.write(key, deposed, previous=old) == "conflict"


async def test_a_write_that_loses_to_an_annotation_is_retried(time: FakeTime, cluster: Cluster) -> None:
    leader, follower = Replica(cluster, time), Replica(cluster, time)
    original = Backend.write
    interfered: list[str] = []

    async def write_after_a_request(
        self: Backend, key: FactKey, record: FactRecord, *, previous: StoredFact | None
    ) -> WriteResult:
        current = self.cluster.facts.get(key.name)
        if current is not None and not interfered:
            interfered.append(key.name)  # a replica marks the fact requested meanwhile: a new resourceVersion
            self.cluster._put(replace(current, requested_at=self.cluster.time.now))
        return await original(self, key, record, previous=previous)

    leader.facts._backend.write = write_after_a_request.__get__(leader.facts._backend)  # type: ignore[method-assign]
    leader.facts.start_leading()
    facts = await resolve(follower, time, APP_V1)
    assert interfered
    assert facts.base_image == Found(DEBIAN)
    assert "conflict" in leader.metrics.writes
    assert leader.metrics.writes.count("written") == 2


async def test_a_region_hss_does_not_serve_costs_no_call(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    made_up = ImageReference.parse("swr.xx-nowhere-9.myhuaweicloud.com/team/app:v1")
    facts = await resolve(leader, time, made_up, seconds=0.0)
    assert isinstance(facts.base_image, NotApplicable)
    assert "xx-nowhere-9" in facts.base_image.detail
    assert leader.cloud_calls == 0
    assert cluster.creates == 0, "not even an ImageFact"


async def test_a_region_hss_does_not_serve_costs_no_call_whatever_the_mode(time: FakeTime, cluster: Cluster) -> None:
    made_up = ImageReference.parse("swr.xx-nowhere-9.myhuaweicloud.com/team/app:v1")
    replica = Replica(cluster, time)
    # --fact-store memory: the resolver is the fact source.
    memory = await replica.resolver.resolve(made_up, base_image=True, digest=True, deadline=time.deadline(3))
    assert isinstance(memory.base_image, NotApplicable)
    assert "xx-nowhere-9" in memory.base_image.detail
    # Degraded: the store cannot be written, so misses are resolved in-process.
    cluster.writable = False
    await resolve(replica, time, APP_V1)
    assert replica.facts.degraded
    calls = replica.cloud_calls
    degraded = await resolve(replica, time, made_up, seconds=0.0)
    assert degraded.base_image == memory.base_image, "the same answer, in the same words"
    # Past the fact cap: misses are resolved in-process too.
    cluster.writable = True
    await time.advance(31.0)
    replica.facts.settings = StoreSettings(upkeep=UpkeepSettings(max_facts=1))
    capped = await resolve(replica, time, made_up, seconds=0.0)
    assert capped.base_image == memory.base_image
    assert replica.cloud_calls == calls, "no call in any mode"
    assert cluster.creates == 0
    # An ACR region outside a configured list, likewise.
    only_shanghai = RegionAllowList.of(aliyun=["cn-shanghai"])
    resolver = FactResolver(MAPPING, replica.hss, replica.sas, regions=only_shanghai, clock=time, sleep=time.sleep)
    acr = await resolver.resolve(APP_V1, base_image=False, digest=True, deadline=time.deadline(3))
    assert isinstance(acr.registry_digest, NotApplicable)
    assert "cn-hangzhou" in acr.registry_digest.detail
    assert replica.cloud_calls == calls


def test_the_default_hss_regions_are_the_sdks() -> None:
    sdk = pytest.importorskip("huaweicloudsdkhss.v5.region.hss_region")
    assert set(sdk.HssRegion.static_fields) == HSS_REGIONS
    assert RegionAllowList().refusal("aliyun", "ap-southeast-1") is None, "no ACR region is refused by default"
    assert RegionAllowList.of(aliyun=["cn-hangzhou"]).refusal("aliyun", "ap-southeast-1")


async def test_a_leader_whose_watch_lags_does_not_resolve_what_it_just_stored(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    name = FactKey("huawei", MAPPING.hss_location(APP_V1), APP_V1).name  # type: ignore[arg-type]
    await resolve(leader, time, APP_V1)
    calls = leader.cloud_calls
    answered = cluster.facts[name]
    lagging = replace(answered, record=None)
    cluster.facts[name] = lagging  # the index still shows the ImageFact as created, not yet answered
    leader.facts.observe(lagging)  # ... and its create event asks again
    await time.advance(5.0)
    assert leader.cloud_calls == calls, "the leader remembers what it wrote until its watch brings it"
    cluster.facts[name] = answered
    await leader.facts.aclose()
