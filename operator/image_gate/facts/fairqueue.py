"""
Pending lookups, served fairly across namespaces, in tiers of urgency.

Anyone who can create a pod can send image-gate images that do not exist, and
at HSS's 5 calls a minute every lookup waits for the one before it. A plain
FIFO would make a namespace that floods 50 unknown images delay everybody
else's first image by ten minutes. Here each namespace (each *group*) has its
own FIFO, and the groups take turns: a namespace's new image waits for at most
one lookup of every other namespace with something pending, however long
their queues are.

**Tiers.** Not every lookup is as urgent: an admission waits for a miss, while
a refresh ahead of expiry or a fact fetched ahead of need (the images of
running workloads, then the registry's inventory) waits for nobody. Each push
names its tier (0 is the most urgent); a tier is served only when every more
urgent one is empty, and within a tier the groups take turns as above. Asking
for a queued key again in a more urgent tier moves it there (an inventory
prefetch that an admission now waits for becomes a miss); in the same or a
less urgent tier it changes nothing. A full queue makes room for an urgent
item by dropping the newest item of its least urgent non-empty tier.

A key is queued once: asking again while it waits changes nothing (its group
and place stay those of the first request), so repeats cost neither a slot nor
a call. Who serves the queue decides how many lookups run at once; to keep the
turns fair that must be few, or the cloud's own limiter becomes a FIFO again.

Every count (per group, per tier, in all) is kept as items come and go, so a
metric read after each change costs the number of groups, never the number of
items (the queue holds up to 10,000).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["FairQueue"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    tier: int
    group: str
    item: T
    place: int
    """Which of the key's places in its group's FIFO is the live one: removed or moved keys leave theirs behind."""


@dataclass(slots=True)
class _Tier(Generic[K]):
    groups: OrderedDict[str, deque[tuple[K, int]]] = field(default_factory=OrderedDict)
    last_served: str | None = None
    count: int = 0


class FairQueue(Generic[K, T]):
    """Tiers in order of urgency; in each, round-robin over groups, FIFO within a group; each key at most once."""

    def __init__(self, *, max_items: int | None = None, tiers: int = 1) -> None:
        """``max_items`` bounds the whole queue: `push` refuses beyond it rather than grow without end."""
        if tiers < 1:
            raise ValueError(f"FairQueue needs at least one tier, not {tiers}")
        self._tiers: list[_Tier[K]] = [_Tier() for _ in range(tiers)]
        self._items: dict[K, _Entry[T]] = {}
        self._by_group: dict[str, int] = {}
        self._max_items = max_items
        self._places = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def push(self, group: str, key: K, item: T, *, tier: int = 0) -> bool:
        """Queue ``item`` under ``key`` for ``group`` in ``tier``.

        False when the key is already queued in that tier or a more urgent one (nothing changes), or when the
        queue is full of items at least as urgent. A key queued in a less urgent tier moves to ``tier``.
        """
        if not 0 <= tier < len(self._tiers):
            raise ValueError(f"tier {tier} is not one of this queue's {len(self._tiers)}")
        queued = self._items.get(key)
        if queued is not None:
            if queued.tier <= tier:
                return False
            self._forget(key)  # its old place stays behind in the less urgent tier and is skipped there
        elif self._max_items is not None and len(self._items) >= self._max_items and not self._make_room(tier):
            return False
        level = self._tiers[tier]
        queue = level.groups.get(group)
        if queue is None:
            queue = level.groups[group] = deque()
            # A new group's turn comes before the group served last: that one just had its turn.
            last = level.last_served
            if last is not None and last in level.groups:
                level.groups.move_to_end(last)
        place = next(self._places)
        queue.append((key, place))
        self._items[key] = _Entry(tier, group, item, place)
        level.count += 1
        self._by_group[group] = self._by_group.get(group, 0) + 1
        self._changed.set()
        return True

    def _make_room(self, tier: int) -> bool:
        """Drop the newest item of the least urgent non-empty tier below ``tier``; False if there is none."""
        for level in reversed(self._tiers[tier + 1 :]):
            while level.count:  # a live place is somewhere in this tier: the loop ends on it
                group, queue = next(reversed(level.groups.items()))
                key, place = queue.pop()
                if not queue:
                    del level.groups[group]
                entry = self._items.get(key)
                if entry is not None and entry.place == place:
                    self._forget(key)
                    return True
        return False

    def pop(self) -> tuple[str, K, T] | None:
        """The next item, or None: the most urgent tier's first group's oldest item; that group goes to the back."""
        for level in self._tiers:
            groups = level.groups
            while groups:
                group, queue = next(iter(groups.items()))
                key, place = queue.popleft()
                level.last_served = group
                if queue:
                    groups.move_to_end(group)
                else:
                    del groups[group]
                entry = self._items.get(key)
                if entry is not None and entry.place == place:  # else a removed or moved key's old place
                    self._forget(key)
                    return group, key, entry.item
        self._changed.clear()
        return None

    def remove(self, key: K) -> bool:
        """Take ``key`` out of the queue (answered meanwhile); True if it was queued."""
        return self._forget(key)

    def _forget(self, key: K) -> bool:
        entry = self._items.pop(key, None)
        if entry is None:
            return False
        self._tiers[entry.tier].count -= 1
        left = self._by_group[entry.group] - 1
        if left:
            self._by_group[entry.group] = left
        else:
            del self._by_group[entry.group]
        return True

    async def get(self) -> tuple[str, K, T]:
        """Wait for the next item."""
        while True:
            entry = self.pop()
            if entry is not None:
                return entry
            await self._changed.wait()

    def pending_by_group(self) -> dict[str, int]:
        """How many items each group has waiting (for the metric): a copy of the counts, one entry per group."""
        return dict(self._by_group)

    def pending_in_tier(self, tier: int) -> int:
        """How many items wait in ``tier``."""
        return self._tiers[tier].count

    def clear(self) -> None:
        """Forget everything (leadership lost: the next leader reads what is pending from the cluster)."""
        self._tiers = [_Tier() for _ in self._tiers]
        self._items.clear()
        self._by_group.clear()
        self._changed.clear()
