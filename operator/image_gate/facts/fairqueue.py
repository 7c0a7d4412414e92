"""
Pending lookups, served fairly across namespaces.

Anyone who can create a pod can send image-gate images that do not exist, and
at HSS's 5 calls a minute every lookup waits for the one before it. A plain
FIFO would make a namespace that floods 50 unknown images delay everybody
else's first image by ten minutes. Here each namespace (each *group*) has its
own FIFO, and the groups take turns: a namespace's new image waits for at most
one lookup of every other namespace with something pending, however long
their queues are.

A key is queued once: asking again while it waits changes nothing (its group
and place stay those of the first request), so repeats cost neither a slot nor
a call. Who serves the queue decides how many lookups run at once; to keep the
turns fair that must be few, or the cloud's own limiter becomes a FIFO again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["FairQueue"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class FairQueue(Generic[K, T]):
    """Round-robin over groups, FIFO within a group, each key at most once."""

    def __init__(self, *, max_items: int | None = None) -> None:
        """``max_items`` bounds the whole queue: `push` refuses beyond it rather than grow without end."""
        self._groups: OrderedDict[str, deque[K]] = OrderedDict()
        self._items: dict[K, tuple[str, T]] = {}
        self._max_items = max_items
        self._last_served: str | None = None
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def push(self, group: str, key: K, item: T) -> bool:
        """Queue ``item`` under ``key`` for ``group``; False when the key is already queued or the queue is full."""
        if key in self._items:
            return False
        if self._max_items is not None and len(self._items) >= self._max_items:
            return False
        self._items[key] = (group, item)
        queue = self._groups.get(group)
        if queue is None:
            queue = self._groups[group] = deque()
            # A new group's turn comes before the group served last: that one just had its turn.
            last = self._last_served
            if last is not None and last in self._groups:
                self._groups.move_to_end(last)
        queue.append(key)
        self._changed.set()
        return True

    def pop(self) -> tuple[str, K, T] | None:
        """The next item, or None: the first group's oldest item, and that group goes to the back of the line."""
        while self._groups:
            group, queue = next(iter(self._groups.items()))
            key = queue.popleft()
            self._last_served = group
            if queue:
                self._groups.move_to_end(group)
            else:
                del self._groups[group]
            entry = self._items.pop(key, None)
            if entry is not None:  # a removed key leaves its place behind; skip it
                return group, key, entry[1]
        self._changed.clear()
        return None

    def remove(self, key: K) -> bool:
        """Take ``key`` out of the queue (answered meanwhile); True if it was queued."""
        return self._items.pop(key, None) is not None

    async def get(self) -> tuple[str, K, T]:
        """Wait for the next item."""
        while True:
            entry = self.pop()
            if entry is not None:
                return entry
            await self._changed.wait()

    def pending_by_group(self) -> dict[str, int]:
        """How many items each group has waiting (for the metric)."""
        counts: dict[str, int] = {}
        for group, _ in self._items.values():
            counts[group] = counts.get(group, 0) + 1
        return counts

    def clear(self) -> None:
        """Forget everything (leadership lost: the next leader reads what is pending from the cluster)."""
        self._groups.clear()
        self._items.clear()
        self._changed.clear()
