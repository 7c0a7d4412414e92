"""The latency budget, end to end: real clients, real cache, cloudsim slower than the deadline."""

from __future__ import annotations

import asyncio

from cloudsim.faults import Fault
from cloudsim.server import Simulators
from image_gate.app.settings import Settings
from image_gate.app.wiring import fact_resolver
from image_gate.clouds.quota import Rate
from image_gate.core import messages
from image_gate.core.admission import Admission
from image_gate.core.evaluate import Subject
from image_gate.core.findings import Unresolved
from image_gate.core.outcomes import Unavailable
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container
from tests.cloudenv import huawei_sdk_environ
from tests.tlsutil import TestPki

UBUNTU = "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
POLICY = compile_policy("base-os", {"baseImage": {"allowedOS": [{"name": "Ubuntu", "versions": [">=22.04"]}]}})


def pod(image: str) -> Subject:
    return Subject("Pod", "shop/web", "shop", {}, (Container("container", "app", image),))


async def test_a_slow_cloud_misses_the_deadline_but_the_retry_is_answered_from_the_cache(
    sim: Simulators, pki: TestPki
) -> None:
    environ = huawei_sdk_environ(sim.state.catalogue)
    settings = Settings(hss_endpoint=sim.hss_url, cloud_ca_file=pki.ca_file, hss_rate=Rate(100, 1.0))
    sim.state.faults.reset()
    sim.state.faults.add(Fault(api="ListRegistryImages", kind="latency", seconds=1.0, times=1))
    async with fact_resolver(settings, environ=environ) as resolver:
        admission = Admission(resolver, deadline=0.3)

        first = await admission.review(pod(UBUNTU), [POLICY])
        assert not first.decision.allowed
        [finding] = first.decision.denials
        assert (finding.rule, finding.problem) == ("baseImage", "unresolved")
        assert first.seconds < 0.6, "the answer came at the deadline, not when the cloud did"

        # The API server (or the ReplicaSet controller) tries again a moment later.
        await asyncio.sleep(1.5)
        calls_before_retry = sim.state.faults.snapshot()
        retry = await admission.review(pod(UBUNTU), [POLICY])
        assert retry.decision.allowed, retry.deny_message
        assert sim.state.faults.snapshot() == calls_before_retry, "the retry made no upstream call"
        assert calls_before_retry == {"ListRegistryImages": 1, "ListImageBasicImage": 1}


async def test_when_the_cloud_fails_known_facts_are_served_until_max_stale(sim: Simulators, pki: TestPki) -> None:
    environ = huawei_sdk_environ(sim.state.catalogue)
    settings = Settings(
        hss_endpoint=sim.hss_url,
        cloud_ca_file=pki.ca_file,
        hss_rate=Rate(100, 1.0),
        tag_ttl=0.2,
        negative_ttl=0.1,
        max_stale=1.5,
    )
    sim.state.faults.reset()
    async with fact_resolver(settings, environ=environ) as resolver:
        admission = Admission(resolver, deadline=1.0)
        assert (await admission.review(pod(UBUNTU), [POLICY])).decision.allowed

        sim.state.faults.add(Fault(api="*", kind="error", status=503))
        await asyncio.sleep(0.4)  # the tag's facts have expired; refreshing them fails
        stale = await admission.review(pod(UBUNTU), [POLICY])
        assert stale.decision.allowed, "a fact under max_stale answers while the cloud is down"
        # ... and the review says so: which image, which fact, how old, and the failure it stands in for.
        [(image, [fact])] = [(str(image), list(facts)) for image, facts in stale.stale.items()]
        assert (image, fact.fact) == (UBUNTU, "base image")
        assert 0.2 < fact.age < 1.5
        assert {failure.kind for failure in fact.because} == {"unavailable"}
        [warning] = stale.warnings
        assert warning.startswith(f"image-gate judged image {UBUNTU} on facts from HSS ")
        assert "(its base image): huawei ListRegistryImages: unavailable" in warning

        await asyncio.sleep(1.5)  # now the fact is older than max_stale
        expired = await admission.review(pod(UBUNTU), [POLICY])
        assert not expired.decision.allowed
        [finding] = expired.decision.denials
        assert finding.problem == "unresolved"
        assert isinstance(finding.found, Unresolved)
        assert isinstance(finding.found.outcome, Unavailable)
        assert "unavailable" in messages.describe_found(finding.found)
        assert expired.stale == {}, "past max_stale nothing stale is answered"
    sim.state.faults.reset()
