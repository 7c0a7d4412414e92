"""One namespace floods image-gate with unknown images; another namespace's new image is not starved.

Two image-gate processes share facts through ImageFacts against a real API server; cloudsim enforces
an HSS quota of 5 calls per 6 seconds (HSS's 5 a minute, ten times faster, so the test takes a minute
rather than ten) and image-gate's client-side quota matches it. 50 unknown images from one namespace
wait in the leader's queue; a new image from another namespace is served at the next turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.factstore import FactSharingReplicas, allowed, deny_unresolved, quota_enforcing_cloudsim
from tests.e2e.imagegate import CloudSim, ImageGate, Kube, make_namespace, wait_for

SWR = "swr.cn-north-4.myhuaweicloud.com"
RATE = "5/6"
SLOT = 6.3 / 5
"""Seconds between two HSS calls once the first five are spent (the limiter adds a 5% margin)."""
FLOOD = 50


@pytest.fixture(scope="module")
def fast_quota_cloudsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSim]:
    with quota_enforcing_cloudsim(tmp_path_factory.mktemp("cloudsim-fair"), RATE) as sim:
        yield sim


@pytest.fixture(scope="module")
def replicas(fact_sharing_replicas: FactSharingReplicas, fast_quota_cloudsim: CloudSim) -> Iterator[list[ImageGate]]:
    with fact_sharing_replicas.running(fast_quota_cloudsim, prefix="fair", env={"IMAGE_GATE_HSS_RATE": RATE}) as gates:
        yield gates


@pytest.fixture(scope="module")
def namespaces(kube: Kube) -> Iterator[tuple[str, str]]:
    names = (make_namespace(kube, "flood", {}), make_namespace(kube, "team", {}))
    factories = [deny_unresolved(kube, f"fair-{name}", name, f"{SWR}/**") for name in names]
    try:
        yield names
    finally:
        for factory in factories:
            factory.delete_all()
        for name in names:
            kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def test_a_flood_of_unknown_images_does_not_starve_another_namespace(
    replicas: list[ImageGate], namespaces: tuple[str, str], fast_quota_cloudsim: CloudSim
) -> None:
    flood_namespace, team_namespace = namespaces

    def leading() -> bool | None:
        for gate in replicas:
            for line in gate.health("/metrics").text.splitlines():
                if line.startswith("image_gate_leader ") and float(line.split()[1]) == 1:
                    return True
        return None

    wait_for(leading, what="a leader", timeout=30)
    flood = [f"{SWR}/flood/bogus{n}:v1" for n in range(FLOOD)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        denied = list(pool.map(lambda n: not allowed(replicas[n % 2], flood_namespace, flood[n]), range(FLOOD)))
        assert all(denied), "unknown images are denied (onUnresolved: Deny)"
        asked = time.monotonic()
        mine = f"{SWR}/demo/api:1.4.2"
        while not allowed(replicas[1], team_namespace, mine):
            assert time.monotonic() - asked < 60, "the team's image waited behind the flood"
            time.sleep(0.2)
        waited = time.monotonic() - asked
    calls = fast_quota_cloudsim.calls().get("ListRegistryImages", 0)
    print(f"\nteam's new image admitted {waited:.1f}s after it was asked, {calls} ListRegistryImages calls so far")
    assert calls < FLOOD, "served before the flood drained"
    # One turn of the flood (at most two lookups in flight) and its own two calls, one quota slot each,
    # plus the review's own round trips.
    assert waited <= 4 * SLOT + 3.0, waited
