"""
kopf's per-object memory, kept for watched objects only: admission reviews leave none behind.

kopf recalls a memo for every admission review and, for anything but a CREATE,
keeps it (keyed by the object's uid) until a watch sees the object deleted.
image-gate watches policies and namespaces, never the pods and workloads it
judges, so nothing would ever free those memos: every UPDATE of a new uid
(and a caller can invent uids) grew the process by about a kilobyte, forever.

image-gate's handlers use no memo, so a review gets the memo of an object that
kopf already remembers (a watched one), or else a fresh copy of the operator's
memo that is remembered nowhere -- kopf's own treatment of a CREATE.

ImageFacts are watched, and there may be 50,000 of them, but their handlers (the
fact index and the watch handler) keep no state between events: no memo, no daemon,
no retried handler. kopf's memory of each one (memo, throttler, daemon and indexing
state: about 800 bytes) is built for each event and forgotten after it instead.
"""

from __future__ import annotations

import copy

from kopf._cogs.structs import bodies, ephemera
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

from image_gate.facts.records import API_GROUP, FACT_KIND

__all__ = ["WatchedOnlyMemories"]

_FACT_API_VERSION_PREFIX = f"{API_GROUP}/"


class WatchedOnlyMemories(ResourceMemories):
    """kopf's memories, where admission reviews read but never add (passed to ``kopf.spawn_tasks``).

    ``recall_memo`` is kopf's admission-only entry point (its watches call ``recall``), so
    overriding it leaves the watched objects' memories exactly as kopf keeps them.
    """

    async def recall_memo(
        self,
        raw_body: bodies.RawBody,
        *,
        memobase: ephemera.AnyMemo | None = None,
        ephemeral: bool = False,
    ) -> ephemera.AnyMemo:
        known = self._items.get(self._build_key(raw_body))
        if known is not None:
            return known.memo
        return copy.copy(memobase) if memobase is not None else ephemera.AnyMemo(ephemera.Memo())

    async def recall(
        self,
        raw_body: bodies.RawBody,
        *,
        memobase: ephemera.AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        """kopf's watches call this for every event; an ImageFact's memory lasts for its event only.

        What an unexpected error in kopf's own processing of an ImageFact then loses is the
        throttle's escalation: each such event waits the first delay again.
        """
        if raw_body.get("kind") == FACT_KIND and str(raw_body.get("apiVersion", "")).startswith(
            _FACT_API_VERSION_PREFIX
        ):
            ephemeral = True
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=ephemeral
        )
