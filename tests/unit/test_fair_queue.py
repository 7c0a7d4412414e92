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


# -- tiers of urgency


def test_a_less_urgent_tier_waits_for_every_more_urgent_one() -> None:
    queue: FairQueue[str, str] = FairQueue(tiers=3)
    queue.push("(inventory)", "inv", "x", tier=2)
    queue.push("(running)", "run", "x", tier=1)
    queue.push("(refresh)", "ref", "x", tier=1)
    queue.push("team", "miss", "x")
    assert drain(queue) == ["miss", "run", "ref", "inv"], (
        "misses, then refresh and running taking turns, then inventory"
    )


def test_a_key_asked_for_more_urgently_moves_up_and_never_down() -> None:
    queue: FairQueue[str, str] = FairQueue(tiers=3)
    for n in range(3):
        queue.push("(inventory)", f"inv-{n}", "x", tier=2)
    assert not queue.push("(inventory)", "inv-2", "x", tier=2), "the same tier: nothing changes"
    assert queue.push("team", "inv-2", "wanted"), "an admission waits for it now"
    assert not queue.push("(inventory)", "inv-2", "x", tier=2), "and it does not go back down"
    assert len(queue) == 3
    assert queue.pending_by_group() == {"(inventory)": 2, "team": 1}
    assert queue.pending_in_tier(0) == 1
    assert queue.pending_in_tier(2) == 2
    assert queue.pop() == ("team", "inv-2", "wanted")
    assert drain(queue) == ["inv-0", "inv-1"], "its old place is skipped"


def test_a_full_queue_drops_the_newest_least_urgent_item_for_an_urgent_one() -> None:
    queue: FairQueue[str, str] = FairQueue(max_items=3, tiers=3)
    queue.push("(running)", "run", "x", tier=1)
    queue.push("(inventory)", "inv-0", "x", tier=2)
    queue.push("(inventory)", "inv-1", "x", tier=2)
    assert not queue.push("(inventory)", "inv-2", "x", tier=2), "full of items as urgent"
    assert queue.push("team", "miss-0", "x")
    assert "inv-1" not in queue, "the newest of the least urgent tier made room"
    assert queue.push("team", "miss-1", "x")
    assert queue.push("team", "miss-2", "x"), "then the next tier up"
    assert not queue.push("team", "miss-3", "x"), "misses are never dropped for misses"
    assert drain(queue) == ["miss-0", "miss-1", "miss-2"]
    assert queue.pending_by_group() == {}


def test_counts_stay_exact_over_ten_thousand_items() -> None:
    """The counts are kept as items come and go (a metric reads them after every change): checked against a
    count from scratch after every kind of change, with 10,000 items pending."""
    queue: FairQueue[str, str] = FairQueue(max_items=10_000, tiers=3)
    groups = [f"ns-{n}" for n in range(40)]
    for n in range(10_000):
        tier = n % 3
        group = "(inventory)" if tier == 2 else groups[n % len(groups)]
        assert queue.push(group, f"k{n}", group, tier=tier)
    assert len(queue) == 10_000

    def from_scratch() -> dict[str, int]:
        counts: dict[str, int] = {}
        for key in list(queue._items):
            group = queue._items[key].group
            counts[group] = counts.get(group, 0) + 1
        return counts

    assert queue.pending_by_group() == from_scratch()
    assert sum(queue.pending_in_tier(tier) for tier in range(3)) == 10_000
    for n in range(0, 10_000, 7):
        queue.remove(f"k{n}")
    for n in range(2, 10_000, 30):
        queue.push("ns-urgent", f"k{n}", "x")  # inventory keys moved up, where not removed
    popped = [queue.pop() for _ in range(2_500)]
    assert all(entry is not None for entry in popped)
    assert queue.pending_by_group() == from_scratch()
    assert sum(queue.pending_in_tier(tier) for tier in range(3)) == len(queue)
    remaining = len(queue)
    assert len(set(drain(queue))) == remaining, "each pending key served once, none lost"
    assert queue.pending_by_group() == {}
    assert [queue.pending_in_tier(tier) for tier in range(3)] == [0, 0, 0]
