"""
HSS's image inventory, one page at a time: what the leader's mirror reads (``facts.inventory``).

``ListRegistryImages`` without ``image_name`` lists every image HSS has synced
for a namespace, 200 to a page (HSS's largest), ``offset`` counting rows. A
page is one call of HSS's 5 a minute: the mirror asks for one only when the
client-side quota has a slot free at that moment (``max_quota_wait=0``), so
it never queues ahead of an admission's lookup; `HssClient.registry_page`
answers `Throttled` without a call otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from image_gate.clouds.huawei.answers import RegistryImage

__all__ = ["MAX_PAGE_SIZE", "RegistryPage"]

MAX_PAGE_SIZE = 200
"""HSS's largest ``limit`` for ``ListRegistryImages``."""


@dataclass(frozen=True, slots=True)
class RegistryPage:
    """One page of a namespace's images as HSS listed them."""

    rows: tuple[RegistryImage, ...]
    """The rows of the namespace asked for (HSS's filter may be fuzzy: others are dropped)."""
    offset: int
    """The ``offset`` this page was asked for."""
    listed: int
    """How many rows HSS returned, the dropped ones included: where the next page starts."""
    total: int
    """``total_num``: how many images HSS lists for the whole query."""
    request_id: str | None = None

    @property
    def next_offset(self) -> int | None:
        """Where the next page starts; None when this one was the last (or HSS listed nothing more)."""
        end = self.offset + self.listed
        return end if self.listed and end < self.total else None
