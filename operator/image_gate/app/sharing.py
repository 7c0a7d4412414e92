"""
Wiring of the shared facts: the ImageFact store, the Lease loop, and who is told what.

With ``--fact-store cluster`` (the chart's ``auto``: it always gives the
namespace) every replica answers reviews from the cluster's ImageFacts, and the
replica holding the Lease ``image-gate`` in image-gate's namespace is the only
one that calls the clouds. With ``memory`` each replica resolves on its own, as
before the store existed (a local ``image-gate run`` without the CRD).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import kopf

from image_gate.app.metrics import Metrics
from image_gate.app.settings import Settings
from image_gate.core.admission import FactSource
from image_gate.facts.calllog import CallLog, Handover
from image_gate.facts.records import API_GROUP, API_VERSION, FACT_PLURAL
from image_gate.facts.resolver import FactResolver
from image_gate.facts.shared import SharedFacts
from image_gate.facts.store import StoreSettings
from image_gate.facts.upkeep import DAY, UpkeepSettings
from image_gate.kube.factstore import KubeFactStore, register_fact_store
from image_gate.kube.kubeapi import ApiError, KubeApi
from image_gate.kube.lease import KubeLeases, LeaderElector, LeaseSettings

__all__ = ["FactSharing", "fact_sharing", "shares_facts"]

logger = logging.getLogger(__name__)

LEASE_NAME = "image-gate"
_COUNT_INTERVAL = 30.0
_STATES = (
    "Pending",
    "Found",
    "NotFound",
    "NotApplicable",
    "Unauthorized",
    "Throttled",
    "Unavailable",
    "TimedOut",
    "BadResponse",
    "Failed",
)


def shares_facts(settings: Settings) -> bool:
    return settings.fact_store == "cluster" or (settings.fact_store == "auto" and bool(settings.namespace))


def replica_identity() -> str:
    """The Lease's holder: the pod's name (the host name in a pod) and a suffix unique to this process."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass
class FactSharing:
    """What ``run`` needs: the call log the clients report to, and how to wrap the resolver."""

    settings: Settings
    metrics: Metrics
    calls: CallLog
    registry: kopf.OperatorRegistry
    store: KubeFactStore | None = None
    """The ImageFact store, once `source` shares facts through the cluster."""
    leading: bool = False
    handover: Handover | None = None
    """What the predecessor's calls leave of the quota, while this replica leads (see ``facts.calllog``)."""
    _listeners: list[Callable[[bool], None]] = field(default_factory=list)

    def follow_leadership(self, listener: Callable[[bool], None]) -> None:
        """Tell ``listener`` when this replica starts (True) and stops (False) leading; at once if it leads now."""
        self._listeners.append(listener)
        if self.leading:
            listener(True)

    @asynccontextmanager
    async def source(self, resolver: FactResolver) -> AsyncIterator[FactSource]:
        """The `FactSource` for admission: `SharedFacts` over ``resolver``, with its Lease loop running."""
        settings = self.settings
        namespace = settings.namespace
        if not shares_facts(settings) or namespace is None:
            yield resolver
            return
        async with AsyncExitStack() as stack:
            api = KubeApi()
            stack.push_async_callback(api.aclose)
            if settings.fact_store == "auto" and not await _imagefacts_served(api):
                logger.warning(
                    "the ImageFact CRD is not installed: each replica resolves facts on its own "
                    "(install charts/image-gate/crds/ to share them and the cloud quota)"
                )
                yield resolver
                return
            store = KubeFactStore(api, namespace=namespace, lease=LEASE_NAME)
            facts = SharedFacts(
                resolver,
                store,
                settings=store_settings(settings),
                observer=self.metrics,
            )
            stack.push_async_callback(facts.aclose)
            register_fact_store(self.registry, facts=facts, store=store)
            self.store = store

            def leadership(leading: bool, handover: Handover | None) -> None:
                self.metrics.leading(leading)
                if leading:
                    facts.start_leading(handover)
                else:
                    facts.stop_leading()
                self.leading = leading
                self.handover = (handover or Handover()) if leading else None
                for listener in self._listeners:
                    listener(leading)

            @kopf.on.cleanup(registry=self.registry)
            async def stop_leading_work(**_: object) -> None:
                # kopf waits up to 5 s for the tasks started after it (the leader's workers, the upkeep,
                # the inventory mirror's walk, the audit) before it cancels them, and a pod's grace period
                # is short: stop them now. The Lease itself is released when this context exits.
                if self.leading:
                    leadership(False, None)

            lease = lease_settings(settings, namespace)
            elector = LeaderElector(
                KubeLeases(api, namespace=namespace, name=LEASE_NAME), lease, calls=self.calls, on_change=leadership
            )
            logger.info("facts are shared through ImageFacts; Lease %s/%s as %s", namespace, LEASE_NAME, lease.identity)
            self.metrics.leading(False)
            tasks = [
                asyncio.create_task(elector.run(), name="image-gate lease"),
                asyncio.create_task(_count_facts(store, self.metrics), name="image-gate fact counts"),
            ]

            async def stop() -> None:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)  # the Lease is released here

            stack.push_async_callback(stop)
            yield facts


def store_settings(settings: Settings) -> StoreSettings:
    return StoreSettings(
        tag_ttl=settings.tag_ttl,
        negative_ttl=settings.negative_ttl,
        max_stale=settings.max_stale,
        upkeep=UpkeepSettings(max_facts=settings.max_facts, unused_after=settings.unused_fact_days * DAY),
    )


def lease_settings(settings: Settings, namespace: str) -> LeaseSettings:
    """client-go's proportions (Kyverno's 15 s / 10 s / 2 s) for any duration."""
    duration = settings.lease_duration
    return LeaseSettings(
        namespace=namespace,
        identity=replica_identity(),
        name=LEASE_NAME,
        lease_duration=duration,
        renew_deadline=duration * 2 / 3,
        retry_period=duration * 2 / 15,
    )


def fact_sharing(settings: Settings, metrics: Metrics, registry: kopf.OperatorRegistry) -> FactSharing:
    return FactSharing(settings, metrics, CallLog(forward=metrics), registry)


async def _imagefacts_served(api: KubeApi) -> bool:
    """Whether the API server serves ImageFacts (discovery, readable by every authenticated user)."""
    try:
        group = await api.request("GET", f"/apis/{API_GROUP}/{API_VERSION}")
    except ApiError as exc:
        if not exc.not_found:
            logger.warning("could not ask the API server whether it serves ImageFacts: %s", exc)
        return False
    resources = group.get("resources")
    return isinstance(resources, list) and any(
        isinstance(resource, dict) and resource.get("name") == FACT_PLURAL for resource in resources
    )


async def _count_facts(store: KubeFactStore, metrics: Metrics) -> None:
    """The ``image_gate_facts`` gauge, by state, from the index (never a LIST)."""
    while True:
        counts: Counter[str] = Counter(dict.fromkeys(_STATES, 0))
        for stored in store.stored():
            counts[stored.record.state if stored.record is not None else "Pending"] += 1
        metrics.fact_states(counts)
        await asyncio.sleep(_COUNT_INTERVAL)
