"""When facts are shared through the cluster: ``--fact-store`` and the namespace."""

from __future__ import annotations

import argparse
import time
from typing import Any

import pytest

from image_gate.app.clusterfacts import list_cluster_facts
from image_gate.app.settings import Settings, SettingsError, add_run_arguments
from image_gate.app.sharing import lease_settings, replica_identity, shares_facts, store_settings
from image_gate.app.wiring import fact_resolver
from image_gate.core.clock import Deadline
from image_gate.core.outcomes import BaseImage, Found
from image_gate.facts.records import FactKey, FactRecord, status_of
from image_gate.facts.resolver import FactResolver
from image_gate.facts.shared import SharedFacts
from tests.fakeclouds import APP_V1, DIGEST_A, MAPPING, FakeHss, FakeSas, known
from tests.faketime import FakeTime

UBUNTU = BaseImage("Ubuntu", "22.04", "sha256:" + "e" * 64)


def settings(*argv: str, **env: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return Settings.from_arguments(parser.parse_args(list(argv)), environ=env)


def test_auto_shares_facts_when_the_namespace_is_known() -> None:
    assert settings().fact_store == "auto"
    assert not shares_facts(settings())
    assert shares_facts(settings(IMAGE_GATE_NAMESPACE="image-gate"))
    assert not shares_facts(settings("--fact-store", "memory", "--namespace", "image-gate"))
    assert shares_facts(settings("--fact-store", "CLUSTER", "--namespace", "image-gate"))


def test_cluster_without_a_namespace_stops_start_up() -> None:
    with pytest.raises(SettingsError, match="--namespace"):
        settings(IMAGE_GATE_FACT_STORE="cluster")
    with pytest.raises(SettingsError, match="--fact-store"):
        settings("--fact-store", "etcd")


def test_the_lease_and_the_store_follow_the_settings() -> None:
    lease = lease_settings(settings("--lease-duration-seconds", "30"), "image-gate")
    assert (lease.lease_duration, lease.renew_deadline, lease.retry_period) == (30.0, 20.0, 4.0)
    assert lease_settings(settings(), "image-gate").retry_period == 2.0
    store = store_settings(settings(IMAGE_GATE_MAX_FACTS="1000", IMAGE_GATE_UNUSED_FACT_DAYS="7"))
    assert store.upkeep.max_facts == 1000
    assert store.upkeep.unused_after == 7 * 86_400
    with pytest.raises(SettingsError, match="IMAGE_GATE_MAX_FACTS"):
        settings(IMAGE_GATE_MAX_FACTS="0")


async def test_the_resolver_keeps_the_region_lists_and_the_cap_in_every_mode() -> None:
    """The resolver, not the shared store, holds the region allow-list and honours the fact cap, so that
    a replica resolving in-process (``--fact-store memory``, or degraded) refuses the same regions."""
    async with fact_resolver(settings("--acr-regions", "cn-hangzhou, cn-shanghai"), environ={}) as resolver:
        assert resolver.regions.aliyun == frozenset({"cn-hangzhou", "cn-shanghai"})
        assert resolver.regions.huawei is not None
        assert "cn-north-4" in resolver.regions.huawei, "HSS keeps its SDK's regions"
        assert resolver.settings.max_entries == 10_000, "the in-process bound, below the default cap of 50,000"
    async with fact_resolver(
        settings(IMAGE_GATE_HSS_REGIONS="cn-north-4", IMAGE_GATE_MAX_FACTS="500"), environ={}
    ) as r:
        assert r.regions.huawei == frozenset({"cn-north-4"})
        assert r.settings.max_entries == 500, "--max-facts bounds what a replica keeps in memory too"


def test_every_process_holds_the_lease_under_its_own_name() -> None:
    assert replica_identity() != replica_identity()


async def test_check_from_the_cluster_answers_from_its_facts_and_asks_the_clouds_for_the_rest() -> None:
    hss, sas = FakeHss(FakeTime()), FakeSas(FakeTime())
    known(hss, sas)
    resolver = FactResolver(MAPPING, hss, sas)
    location = MAPPING.hss_location(APP_V1)
    assert location is not None
    stored = status_of(FactRecord(Found(UBUNTU), observed_at=time.time(), expires_at=None))
    listing = {
        "items": [
            {
                "metadata": {"name": FactKey("huawei", location, APP_V1).name, "resourceVersion": "7"},
                "spec": {"cloud": "huawei", "reference": str(APP_V1)},
                "status": stored,
            }
        ]
    }

    class ListingApi:
        async def request(self, method: str, path: str) -> dict[str, Any]:
            assert (method, path) == ("GET", "/apis/imagegate.io/v1alpha1/imagefacts")
            return listing

    listed = await list_cluster_facts(ListingApi())  # type: ignore[arg-type]
    assert len(listed) == 1
    facts = SharedFacts(resolver, listed)
    answer = await facts.resolve(APP_V1, base_image=True, digest=True, deadline=Deadline.after(3))
    assert answer.base_image == Found(UBUNTU), "the cluster's fact, not the cloud's"
    assert hss.find_calls == []
    assert answer.registry_digest == Found(DIGEST_A), "not in the cluster: asked of the cloud"
    assert len(sas.find_calls) == 1
    await facts.aclose()
    await resolver.aclose()
