"""Facts resolved ahead of need against those resolved for an admission miss, as the leader reports them
(``image_gate_facts_resolved_total{when}``). The order of the tiers is ``test_known_and_prefetch``'s."""

from __future__ import annotations

from image_gate.app.metrics import Metrics
from image_gate.core.cloudnames import ALIYUN, HUAWEI
from image_gate.facts.inventory import InventoryObserver
from tests.factcluster import Cluster, Replica, resolve
from tests.fakeclouds import APP_V1, APP_V2
from tests.faketime import FakeTime


async def test_a_miss_is_resolved_at_admission_and_a_prefetch_ahead_of_need(time: FakeTime) -> None:
    leader = Replica(Cluster(time), time)
    leader.facts.start_leading()
    await resolve(leader, time, APP_V1)
    assert sorted(leader.metrics.resolved) == [(ALIYUN, False), (HUAWEI, False)], "a review waited for both"

    leader.facts.prefetch(APP_V2, base_image=True, digest=False, priority="running")
    await time.advance(3)
    assert leader.metrics.resolved[2:] == [(HUAWEI, True)]
    await leader.facts.aclose()


def test_the_metrics_say_when_facts_were_resolved_and_what_the_mirror_did() -> None:
    metrics = Metrics()
    metrics.fact_resolved(cloud=HUAWEI, ahead=True)
    metrics.fact_resolved(cloud=HUAWEI, ahead=False)
    metrics.fact_resolved(cloud=HUAWEI, ahead=True)
    observer: InventoryObserver = metrics
    observer.inventory_page(outcome="found")
    observer.inventory_page(outcome="no free slot")
    observer.inventory_answer(answer="not synced")
    observer.inventory_images(count=451)
    text = metrics.render().decode()
    assert 'image_gate_facts_resolved_total{cloud="huawei",when="ahead"} 2.0' in text
    assert 'image_gate_facts_resolved_total{cloud="huawei",when="admission"} 1.0' in text
    assert 'image_gate_inventory_pages_total{outcome="no free slot"} 1.0' in text
    assert 'image_gate_inventory_answers_total{answer="not synced"} 1.0' in text
    assert "image_gate_inventory_images 451.0" in text
