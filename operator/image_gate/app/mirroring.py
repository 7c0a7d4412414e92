"""
Wiring of the leader's mirror of HSS's image inventory (``facts.inventory``).

The mirror is built before the resolver (which asks it first for HSS image ids,
see `image_gate.app.wiring.fact_resolver`) and walks only while this replica
holds the Lease: it starts with leadership, after the predecessor's HSS quota
window has passed (the same `Handover` the leader's resolver waits for), and
stops when leadership is lost. It walks the namespaces of the cluster's HSS
ImageFacts (running workloads' images and everything ever asked for), and hands
the images it finds new to `SharedFacts.prefetch` at the lowest priority.

Off with in-memory facts: without the Lease every replica would page HSS. Off
too with ``--hss-inventory-mirror false``: then there is no mirror at all, and
every HSS lookup lists its namespace when it is needed, as before the mirror.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from image_gate.app.metrics import Metrics
from image_gate.app.settings import Settings
from image_gate.app.sharing import FactSharing
from image_gate.clouds.pipeline import default_quota_margin
from image_gate.core.admission import FactSource
from image_gate.core.cloudnames import HUAWEI
from image_gate.core.images import ImageReference
from image_gate.facts.inventory import HssInventory, InventorySettings
from image_gate.facts.shared import SharedFacts

__all__ = ["hss_inventory", "mirror_with_leadership"]

logger = logging.getLogger(__name__)


def hss_inventory(settings: Settings, metrics: Metrics) -> HssInventory[Any] | None:
    """The mirror, idle until `mirror_with_leadership` starts it; None when the setting turns it off.

    One page per window of the client-side limiter of ``ListRegistryImages`` (HSS's period and the
    limiter's margin: 63 s for 5 calls a minute), so it never holds two slots of one window; a listed
    image answers for the tag TTL, as a cached lookup would, and a namespace is walked again at 80 % of it.
    """
    if not settings.hss_inventory_mirror:
        logger.info("HSS's image inventory is not mirrored (--hss-inventory-mirror false)")
        return None
    rate = settings.hss_rate
    window = rate.period + default_quota_margin(rate)
    inventory_settings = InventorySettings(
        call_every=window,
        found_for=settings.tag_ttl,
        rewalk_after=max(window, 0.8 * settings.tag_ttl),  # walked again before its images stop answering
    )
    return HssInventory(settings.registries, inventory_settings, observer=metrics)


def mirror_with_leadership(sharing: FactSharing, facts: FactSource, inventory: HssInventory[Any] | None) -> None:
    """Walk HSS's inventory while this replica leads (facts shared through the cluster only, mirror on)."""
    store = sharing.store
    if inventory is None or not isinstance(facts, SharedFacts) or store is None:
        return
    window = facts.settings.hss_quota_window

    def references() -> Iterator[str]:
        return (stored.reference for stored in store.stored() if stored.cloud == HUAWEI)

    def new_image(image: ImageReference) -> None:
        facts.prefetch(image, base_image=True, digest=False, priority="inventory")

    def leadership(leading: bool) -> None:
        if not leading:
            inventory.stop()
            return
        handover = sharing.handover
        delay = handover.hold_until(HUAWEI, window=window) - time.time() if handover is not None else 0.0
        inventory.start(references=references, on_new=new_image, delay=max(0.0, delay))

    sharing.follow_leadership(leadership)
    logger.info("the leader mirrors HSS's image inventory of the namespaces the cluster's facts name")
