"""The pending-lookup queue: namespaces take turns, each key queued once."""

from __future__ import annotations

import asyncio

from image_gate.facts.fairqueue import FairQueue


def drain(queue: FairQueue[str, str]) -> list[str]:
    order = []
    while (entry := queue.pop()) is not None:
        order.append(entry[1])
    return order


def test_a_flooding_namespace_cannot_starve_another() -> None:
    queue: FairQueue[str, str] = FairQueue()
    for n in range(50):
        queue.push("flood", f"bogus-{n}", "x")
    queue.push("team", "mine", "x")
    order = drain(queue)
    assert order.index("mine") == 1, "the other namespace is served after one of the flood"
    assert order[0] == "bogus-0"
    assert len(order) == 51


def test_a_new_namespace_goes_before_the_one_just_served() -> None:
    queue: FairQueue[str, str] = FairQueue()
    for n in range(3):
        queue.push("flood", f"bogus-{n}", "x")
    assert queue.pop() == ("flood", "bogus-0", "x")
    queue.push("team", "mine", "x")
    assert drain(queue) == ["mine", "bogus-1", "bogus-2"]


def test_groups_take_turns_and_keep_their_own_order() -> None:
    queue: FairQueue[str, str] = FairQueue()
    for key in ("a1", "a2", "a3"):
        queue.push("a", key, key)
    for key in ("b1", "b2"):
        queue.push("b", key, key)
    queue.push("c", "c1", "c1")
    assert drain(queue) == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_a_key_is_queued_once() -> None:
    queue: FairQueue[str, str] = FairQueue()
    assert queue.push("a", "k", "first")
    assert not queue.push("b", "k", "second")
    assert "k" in queue
    assert len(queue) == 1
    assert queue.pending_by_group() == {"a": 1}
    assert queue.pop() == ("a", "k", "first")
    assert queue.push("b", "k", "again"), "once served, it may be asked for again"


def test_removed_keys_are_skipped_and_the_bound_holds() -> None:
    queue: FairQueue[str, str] = FairQueue(max_items=2)
    assert queue.push("a", "k1", "x")
    assert queue.push("a", "k2", "x")
    assert not queue.push("b", "k3", "x"), "full"
    assert queue.remove("k1")
    assert not queue.remove("k1")
    assert drain(queue) == ["k2"]
    assert queue.pending_by_group() == {}


async def test_get_waits_for_an_item() -> None:
    queue: FairQueue[str, str] = FairQueue()
    waiter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.push("a", "k", "item")
    assert await asyncio.wait_for(waiter, 1) == ("a", "k", "item")
    queue.push("a", "k2", "x")
    queue.clear()
    assert len(queue) == 0
    assert queue.pop() is None
