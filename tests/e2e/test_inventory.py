"""Facts before they are needed, with HSS's quota enforced: running images first, then HSS's inventory.

cloudsim answers 429 beyond 5 HSS calls per 12 s per API here (HSS's 5 a minute, five times faster,
so the module takes a couple of minutes), and image-gate paces itself by the same rate. Pods run
before image-gate starts and no fact is stored: the leader's audit finds their images and has them
resolved ahead of need, so after a restart of both replicas new pods of those images are admitted
with no cloud call at all. The leader's mirror of HSS's inventory then answers the image id of a
tag nobody asked for yet, and "HSS has not synced this image", without a ListRegistryImages call,
one page per quota window at most. The steps build on each other, in file order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from image_gate.facts.records import stored_fact
from tests.e2e.factstore import FactSharingReplicas, deny_unresolved, quota_enforcing_cloudsim, review_new_pod
from tests.e2e.imagegate import CloudSim, ImageGate, Kube, make_namespace, pod_manifest, wait_for

SWR = "swr.cn-north-4.myhuaweicloud.com/demo"
RUNNING = (f"{SWR}/api:1.4.2", f"{SWR}/api:1.4.1", f"{SWR}/worker:3.1.0", f"{SWR}/edge-proxy:0.9.1")
NEVER_ASKED = f"{SWR}/api-gateway:1.4.2"
"""Synced and scanned in HSS, run by nobody: the mirror lists it."""
NOT_SYNCED = f"{SWR}/not-synced:1.0"
RATE = "5/12"
WINDOW = 12.0 + 0.6
"""The limiter's window at 5 per 12 s: the period and its margin (5 %)."""
LIST, BASE = "ListRegistryImages", "ListImageBasicImage"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSim]:
    with quota_enforcing_cloudsim(tmp_path_factory.mktemp("cloudsim-inventory"), RATE) as cloudsim:
        yield cloudsim


@pytest.fixture(scope="module")
def running(kube: Kube, crd: dict[str, Any]) -> Iterator[str]:
    """A namespace whose Pods run before image-gate starts (no webhook judges it), under an Enforce policy."""
    namespace = make_namespace(kube, "running", {})
    kube.apply([pod_manifest(f"pod-{n}", namespace, image) for n, image in enumerate(RUNNING)])
    policy = deny_unresolved(kube, f"running-{namespace}", namespace, f"{SWR}/**")
    try:
        yield namespace
    finally:
        policy.delete_all()
        kube.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def metric(gate: ImageGate, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    total = 0.0
    for line in gate.health("/metrics").text.splitlines():
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        if metric_name == name and wanted <= set(label_text.rstrip("}").split(",")):
            total += float(value)
    return total


def leader(gates: Sequence[ImageGate]) -> ImageGate:
    return wait_for(
        lambda: next((gate for gate in gates if metric(gate, "image_gate_leader") == 1.0), None),
        what="a leader",
        timeout=60,
    )


def resolved_references(kube: Kube) -> set[str]:
    """The references whose base image the cluster stores as found."""
    items = kube.get("imagefacts")["items"]
    facts = [stored_fact(item) for item in items]
    return {f.reference for f in facts if f.cloud == "huawei" and f.record is not None and f.record.state == "Found"}


def hss_calls(sim: CloudSim) -> dict[str, int]:
    calls = sim.calls()
    return {api: int(calls.get(api, 0)) for api in (LIST, BASE)}


def throttled(gates: Sequence[ImageGate]) -> float:
    return sum(metric(gate, "image_gate_upstream_calls_total", cloud="huawei", outcome="throttled") for gate in gates)


def test_running_images_are_resolved_ahead_and_a_restart_of_both_replicas_costs_no_call(
    fact_sharing_replicas: FactSharingReplicas, kube: Kube, sim: CloudSim, running: str
) -> None:
    env = {"IMAGE_GATE_HSS_RATE": RATE}
    with fact_sharing_replicas.running(sim, prefix="inventory-first", env=env) as gates:
        lead = leader(gates)
        # Nobody asks: the leader's audit finds the running images and has their facts resolved.
        wait_for(
            lambda: set(RUNNING) <= resolved_references(kube) or None,
            what="the running images' facts",
            timeout=120,
        )
        assert metric(lead, "image_gate_facts_resolved_total", when="admission") == 0
        assert metric(lead, "image_gate_facts_resolved_total", when="ahead") >= len(RUNNING)
        assert throttled(gates) == 0

    before = hss_calls(sim)
    with fact_sharing_replicas.running(sim, prefix="inventory-restarted", env=env) as gates:
        for gate in gates:
            for image in RUNNING:
                answer = review_new_pod(gate, running, image)
                assert answer["allowed"], answer
        assert hss_calls(sim) == before, "a scale-up of what runs waits for no cloud"
        assert sum(metric(gate, "image_gate_facts_resolved_total", when="admission") for gate in gates) == 0


def test_the_mirror_answers_image_ids_and_not_synced_without_a_list_call_one_page_per_window(
    fact_sharing_replicas: FactSharingReplicas, kube: Kube, sim: CloudSim, running: str
) -> None:
    env = {"IMAGE_GATE_HSS_RATE": RATE}
    with fact_sharing_replicas.running(sim, prefix="inventory-mirror", env=env) as gates:
        started = time.monotonic()
        lead = leader(gates)
        wait_for(
            lambda: metric(lead, "image_gate_inventory_pages_total", outcome="found") >= 1 or None,
            what="the leader's first inventory page",
            timeout=60,
        )
        lists, pages = hss_calls(sim)[LIST], metric(lead, "image_gate_inventory_pages_total", outcome="found")

        def admitted() -> bool | None:
            return review_new_pod(gates[1], running, NEVER_ASKED)["allowed"] or None

        wait_for(admitted, what=f"{NEVER_ASKED} resolved", timeout=60, interval=1.0)
        denial = review_new_pod(gates[0], running, NOT_SYNCED)
        assert not denial["allowed"]
        assert "HSS has not synced this image" in denial["status"]["message"]

        # Every list call since was a page of the mirror: the image id came from it, and so did "not synced".
        new_pages = metric(lead, "image_gate_inventory_pages_total", outcome="found") - pages
        assert hss_calls(sim)[LIST] - lists == new_pages
        assert metric(lead, "image_gate_inventory_answers_total", answer="found") >= 1
        assert metric(lead, "image_gate_inventory_answers_total", answer="not synced") >= 1
        # One page per quota window at most: the mirror never holds two slots admissions could use.
        elapsed = time.monotonic() - started
        all_pages = sum(metric(lead, "image_gate_inventory_pages_total", outcome=o) for o in ("found", "not found"))
        assert all_pages <= elapsed / WINDOW + 1
        assert throttled(gates) == 0


def test_the_mirror_turned_off_reads_no_page_and_lookups_list_at_need(
    fact_sharing_replicas: FactSharingReplicas, kube: Kube, sim: CloudSim, running: str
) -> None:
    """``IMAGE_GATE_HSS_INVENTORY_MIRROR=false`` (the chart's ``config.hssInventoryMirror``): no page, ever."""
    env = {"IMAGE_GATE_HSS_RATE": RATE, "IMAGE_GATE_HSS_INVENTORY_MIRROR": "false"}
    image = f"{SWR}/legacy-batch:2.3.0"  # synced in HSS, asked for by no test before: a mirror would answer it
    with fact_sharing_replicas.running(sim, prefix="inventory-off", env=env) as gates:
        lead = leader(gates)
        # HSS ImageFacts name the namespace demo, so a mirror would have it to walk: its first page comes
        # after the predecessor's quota window, within a window of its own (the test above waits for it).
        wait_for(
            lambda: set(RUNNING) <= resolved_references(kube) or None, what="the running images' facts", timeout=120
        )
        time.sleep(3 * WINDOW)
        assert metric(lead, "image_gate_inventory_pages_total") == 0
        lists = hss_calls(sim)[LIST]

        def admitted() -> bool | None:
            return review_new_pod(gates[1], running, image)["allowed"] or None

        wait_for(admitted, what=f"{image} resolved", timeout=60, interval=1.0)
        assert hss_calls(sim)[LIST] > lists, "the lookup listed its namespace itself"
        assert sum(metric(gate, "image_gate_inventory_answers_total") for gate in gates) == 0
        assert metric(lead, "image_gate_inventory_pages_total") == 0
        assert throttled(gates) == 0
