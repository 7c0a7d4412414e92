"""
Whether the policy and namespace watches still hear from the API server.

The indexes the webhook judges from are only as current as kopf's watches.
kopf never gives up on a watch: when the API server is unreachable, or
refuses the watch, it logs and tries again, forever, while the index keeps
its last state. Readiness set once at start-up would go on saying "ready"
over an index that no longer follows the cluster.

What is real to observe: kopf asks for watch bookmarks, and the API server
sends one on every watch about once a minute even when nothing changes;
kopf itself treats 70 s without any event or bookmark as a dead stream and
reconnects (``settings.watching.inactivity_timeout``), and a reconnect lists
the objects again. So a healthy watch yields something (an event, a
bookmark, a listed object) at least every ~70 s; one silent for
`SILENT_AFTER` seconds is broken, and the replica is not ready until it
hears again. kopf offers no hook for this (bookmarks never reach handlers),
so `WatchHealth.install` wraps kopf's ``infinite_watch``, the generator
every watcher task reads its stream from, and notes the time of each item.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Any

from kopf._cogs.clients import watching

from image_gate.core.clock import Clock, monotonic

__all__ = ["SILENT_AFTER", "WatchHealth"]

SILENT_AFTER = 150.0
"""Seconds without anything from a watch before it counts as broken: two bookmark intervals plus
kopf's reconnect (after 70 s of silence) and its listing."""


class WatchHealth:
    """When each watch (by resource plural) last yielded anything; see the module."""

    def __init__(self, watches: Collection[str], *, clock: Clock = monotonic, silent_after: float = SILENT_AFTER):
        self._watches = frozenset(watches)
        self._clock = clock
        self._silent_after = silent_after
        self._last: dict[str, float] = {}
        self._original: Any = None

    def heard(self, plural: str) -> None:
        if plural in self._watches:
            self._last[plural] = self._clock()

    def problem(self) -> str | None:
        """Why the indexes may be stale, or None. A watch not heard from yet is the start-up's business."""
        now = self._clock()
        for plural in sorted(self._watches):
            last = self._last.get(plural)
            if last is not None and now - last > self._silent_after:
                return (
                    f"the {plural} watch has heard nothing from the API server for {now - last:.0f}s "
                    "(no event and no bookmark): the index may be stale"
                )
        return None

    def install(self) -> None:
        """Wrap kopf's watch streams to note what they yield; `uninstall` puts kopf's back."""
        if self._original is not None:
            return
        original = self._original = watching.infinite_watch

        async def noted(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async for item in original(resource=resource, **kwargs):
                self.heard(resource.plural)
                yield item

        watching.infinite_watch = noted

    def uninstall(self) -> None:
        if self._original is not None:
            watching.infinite_watch = self._original
            self._original = None
