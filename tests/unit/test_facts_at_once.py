"""A warm review answers from the caches without awaiting anything (`FactResolver.answered_at_once`),
exactly as `FactResolver.resolve` would: the same facts, the same hits counted, refreshes started ahead
as due; with shared facts, from the ImageFacts index (`SharedFacts.answered_at_once`); and a review whose
facts are at hand takes no task, timer or turn of the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from image_gate.core.admission import Admission
from image_gate.core.evaluate import Subject
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Found, NotApplicable, NotFound, Unauthorized
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container
from image_gate.facts.resolver import CacheSettings, FactResolver, NullFactsObserver
from tests.factcluster import Cluster, Replica
from tests.factcluster import resolve as resolve_shared
from tests.fakeclouds import APP_V1, APP_V2, DEBIAN, DIGEST_A, MAPPING, MIRROR, FakeHss, FakeSas, known
from tests.faketime import FakeTime, settle

BOTH = {"base_image": True, "digest": True}


@dataclass
class Hits(NullFactsObserver):
    """The cache hits and refreshes ahead, as the metrics hear them."""

    hits: list[str] = field(default_factory=list)
    refreshes: list[str] = field(default_factory=list)

    def hit(self, *, cache: str, negative: bool) -> None:
        self.hits.append(cache)

    def refresh_ahead(self, *, cache: str) -> None:
        self.refreshes.append(cache)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def observer() -> Hits:
    return Hits()


@pytest.fixture
async def resolver(time: FakeTime, hss: FakeHss, sas: FakeSas, observer: Hits) -> AsyncIterator[FactResolver]:
    known(hss, sas)
    resolver = FactResolver(MAPPING, hss, sas, clock=time, sleep=time.sleep, observer=observer)
    yield resolver
    await resolver.aclose()


async def test_a_cold_image_is_not_answered_at_once_and_nothing_is_counted(
    resolver: FactResolver, observer: Hits, hss: FakeHss, sas: FakeSas
) -> None:
    assert resolver.answered_at_once(APP_V1, **BOTH) is None
    assert observer.hits == []
    assert hss.find_calls == sas.find_calls == []  # nothing asked either: `resolve` does that


async def test_a_warm_image_is_answered_at_once_as_resolve_answers_it(
    resolver: FactResolver, time: FakeTime, observer: Hits
) -> None:
    await resolver.resolve(APP_V1, **BOTH, deadline=time.deadline(3))
    observer.hits.clear()
    resolved = await resolver.resolve(APP_V1, **BOTH, deadline=time.deadline(3))
    hits_of_resolve = list(observer.hits)
    observer.hits.clear()
    assert resolver.answered_at_once(APP_V1, **BOTH) == resolved
    assert resolved == ImageFacts(base_image=Found(DEBIAN), registry_digest=Found(DIGEST_A), hss_image_id="id-v1")
    assert sorted(observer.hits) == sorted(hits_of_resolve)
    assert len(observer.hits) == 4  # both steps of both chains


async def test_only_the_facts_asked_for_are_answered(resolver: FactResolver, time: FakeTime, observer: Hits) -> None:
    await resolver.resolve(APP_V1, **BOTH, deadline=time.deadline(3))
    observer.hits.clear()
    assert resolver.answered_at_once(APP_V1, base_image=False, digest=True) == ImageFacts(
        registry_digest=Found(DIGEST_A)
    )
    assert sorted(observer.hits) == ["sas_digest", "sas_repository"]


async def test_a_chain_with_one_step_expired_waits_and_counts_nothing(
    resolver: FactResolver, time: FakeTime, observer: Hits
) -> None:
    await resolver.resolve(APP_V1, **BOTH, deadline=time.deadline(3))
    # The tag's steps expire; the digest's base image and the repository's ids do not.
    await time.advance(CacheSettings().tag_ttl)
    observer.hits.clear()
    assert resolver.answered_at_once(APP_V1, base_image=True, digest=False) is None
    assert resolver.answered_at_once(APP_V1, base_image=False, digest=True) is None
    assert observer.hits == []


async def test_a_first_step_that_found_nothing_is_the_answer_at_once(
    resolver: FactResolver, time: FakeTime, hss: FakeHss
) -> None:
    unknown = ImageReference.parse(f"{MIRROR}/team/unknown:v1")
    resolved = await resolver.resolve(unknown, base_image=True, digest=False, deadline=time.deadline(3))
    assert resolved.base_image == NotFound(f"HSS does not know {unknown}")
    assert resolver.answered_at_once(unknown, base_image=True, digest=False) == resolved


async def test_a_hit_at_once_late_in_its_ttl_refreshes_it_ahead(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, observer: Hits
) -> None:
    await resolver.resolve(APP_V1, base_image=True, digest=False, deadline=time.deadline(3))
    await time.advance(CacheSettings().tag_ttl * 0.9)
    assert resolver.answered_at_once(APP_V1, base_image=True, digest=False) is not None
    await settle()
    assert observer.refreshes == ["hss_image"]
    assert len(hss.find_calls) == 2


async def test_what_needs_no_call_is_answered_at_once(time: FakeTime) -> None:
    resolver = FactResolver(MAPPING, None, None, clock=time, sleep=time.sleep)
    unmapped = resolver.answered_at_once(ImageReference.parse("nginx:1.27"), **BOTH)
    assert unmapped == ImageFacts(
        base_image=NotApplicable("no registry mapping sends docker.io to Huawei HSS"),
        registry_digest=NotApplicable("no registry mapping sends docker.io to Alibaba Cloud ACR"),
    )
    without_credentials = resolver.answered_at_once(APP_V1, **BOTH)
    assert without_credentials is not None
    assert isinstance(without_credentials.base_image, Unauthorized)
    assert isinstance(without_credentials.registry_digest, Unauthorized)
    await resolver.aclose()


def subject(*images: ImageReference) -> Subject:
    containers = tuple(Container(kind="container", name=f"c{n}", image=str(image)) for n, image in enumerate(images))
    return Subject(kind="Pod", display_name="shop/web", namespace="shop", namespace_labels={}, containers=containers)


POLICIES = [compile_policy("base-os", {"baseImage": {"deniedOS": [{"name": "centos"}]}})]


async def test_a_warm_review_never_waits_on_the_event_loop(resolver: FactResolver, time: FakeTime) -> None:
    admission = Admission(resolver, clock=time, sleep=time.sleep)
    cold = await admission.review(subject(APP_V1, APP_V2), POLICIES)
    assert cold.decision.allowed
    review = admission.review(subject(APP_V1, APP_V2), POLICIES)
    # Driven by hand: a review that took a task or a turn of the loop would suspend here, not return.
    with pytest.raises(StopIteration) as finished:
        review.send(None)
    assert finished.value.value.decision == cold.decision
    assert admission.waited == 1  # only the cold review waited for lookups


async def test_a_review_with_one_image_cold_looks_up_only_that_one(
    resolver: FactResolver, time: FakeTime, hss: FakeHss, observer: Hits
) -> None:
    admission = Admission(resolver, clock=time, sleep=time.sleep)
    await admission.review(subject(APP_V1), POLICIES)
    observer.hits.clear()
    review = await admission.review(subject(APP_V1, APP_V2), POLICIES)
    assert review.decision.allowed
    assert [image for _, image in hss.find_calls] == [str(APP_V1), str(APP_V2)]
    # APP_V1's two steps once (at once); APP_V2 shares the digest's base image, found by the lookup.
    assert sorted(observer.hits) == ["hss_base_image", "hss_base_image", "hss_image"]


async def test_a_stored_fresh_fact_is_answered_at_once_by_every_replica(time: FakeTime, cluster: Cluster) -> None:
    leader, follower = Replica(cluster, time), Replica(cluster, time)
    leader.facts.start_leading()
    assert follower.facts.answered_at_once(APP_V1, **BOTH) is None, "not stored yet: resolve asks the leader"
    assert cluster.creates == 0, "nothing asked at once"
    await resolve_shared(follower, time, APP_V1)
    for replica in (leader, follower):
        assert replica.facts.answered_at_once(APP_V1, **BOTH) == ImageFacts(
            base_image=Found(DEBIAN), registry_digest=Found(DIGEST_A)
        )
    assert follower.facts.answered_at_once(ImageReference.parse("nginx:1.27"), **BOTH) == ImageFacts(
        base_image=NotApplicable("no registry mapping sends docker.io to Huawei HSS"),
        registry_digest=NotApplicable("no registry mapping sends docker.io to Alibaba Cloud ACR"),
    )


async def test_an_expired_stored_fact_is_left_to_resolve(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    await resolve_shared(leader, time, APP_V1)
    leader.facts.stop_leading()  # nobody refreshes it ahead
    await time.advance(CacheSettings().tag_ttl)
    # resolve answers it stale and has it refreshed; at once, it is not answered at all.
    assert leader.facts.answered_at_once(APP_V1, base_image=True, digest=False) is None


async def test_a_warm_review_on_shared_facts_never_waits_on_the_event_loop(time: FakeTime, cluster: Cluster) -> None:
    leader = Replica(cluster, time)
    leader.facts.start_leading()
    admission = Admission(leader.facts, clock=time, sleep=time.sleep)
    cold = asyncio.ensure_future(admission.review(subject(APP_V1), POLICIES))
    await time.advance(3.0)
    assert cold.result().decision.allowed
    review = admission.review(subject(APP_V1), POLICIES)
    with pytest.raises(StopIteration) as finished:
        review.send(None)
    assert finished.value.value.decision.allowed
