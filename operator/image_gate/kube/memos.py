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
"""

from __future__ import annotations

import copy

from kopf._cogs.structs import bodies, ephemera
from kopf._core.reactor.inventory import ResourceMemories

__all__ = ["WatchedOnlyMemories"]


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
