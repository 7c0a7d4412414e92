"""
Wiring: the cloud clients and the fact resolver, built from settings and environment.

A cloud with no credentials at all is switched off, with a warning: its facts
are then "unauthorized" for the images mapped to it, and each policy's
``onUnresolved`` decides. A cloud with *half* its credentials (an AK without
its SK, RRSA without its token file) stops start-up: that is a mistake to fix
now, not a surprise at the first admission.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from image_gate.app.metrics import Metrics
from image_gate.app.settings import Settings
from image_gate.clouds import aliyun, huawei
from image_gate.clouds.observe import CallObserver
from image_gate.facts.inventory import HssInventory, MirroredHss
from image_gate.facts.regions import RegionAllowList
from image_gate.facts.resolver import CacheSettings, FactResolver, FactsObserver, HssLookups

__all__ = ["StartupError", "fact_resolver"]

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """Raised when image-gate cannot start as configured; the message says what to fix."""


def huawei_client(
    settings: Settings, *, observer: CallObserver | None = None, environ: Mapping[str, str] | None = None
) -> huawei.HssClient | None:
    env = os.environ if environ is None else environ
    if not huawei.configured(env):
        logger.warning("no Huawei Cloud credentials: base-image facts are unavailable (see docs/huawei.md)")
        return None
    verify: str | bool = str(settings.cloud_ca_file) if settings.cloud_ca_file else True
    iam_endpoint = huawei.configured_iam_endpoint(env)
    try:
        auth = huawei.default_auth(env, iam_endpoint=iam_endpoint, verify=verify)
    except huawei.CredentialsError as exc:
        raise StartupError(f"Huawei Cloud credentials: {exc}") from None
    return huawei.HssClient(
        auth,
        endpoint=settings.hss_endpoint,
        iam_endpoint=iam_endpoint,
        verify=verify,
        observer=observer,
        rate=settings.hss_rate,
    )


def aliyun_client(
    settings: Settings, *, observer: CallObserver | None = None, environ: Mapping[str, str] | None = None
) -> aliyun.SasClient | None:
    env = os.environ if environ is None else environ
    if not aliyun.configured(env):
        logger.warning("no Alibaba Cloud credentials: registry digests are unavailable (see docs/aliyun.md)")
        return None
    verify: str | bool = str(settings.cloud_ca_file) if settings.cloud_ca_file else True
    try:
        credentials = aliyun.from_environment(env, verify=verify)
    except aliyun.CredentialsError as exc:
        raise StartupError(f"Alibaba Cloud credentials: {exc}") from None
    return aliyun.SasClient(
        credentials,
        site=settings.registries.aliyun_site,
        endpoint=settings.sas_endpoint,
        verify=verify,
        observer=observer,
        rate=settings.sas_rate,
    )


@asynccontextmanager
async def fact_resolver(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    environ: Mapping[str, str] | None = None,
    calls: CallObserver | None = None,
    inventory: HssInventory[Any] | None = None,
) -> AsyncIterator[FactResolver]:
    """A `FactResolver` over the configured clouds; closes everything on exit.

    ``calls`` hears of every cloud call instead of ``metrics`` (the Lease's call log, which forwards to them).
    ``inventory`` (the leader's mirror of HSS's images) answers HSS image ids before the client is asked.
    """
    async with AsyncExitStack() as stack:
        call_observer = calls if calls is not None else metrics
        hss = huawei_client(settings, observer=call_observer, environ=environ)
        if hss is not None:
            stack.push_async_callback(hss.aclose)
        sas = aliyun_client(settings, observer=call_observer, environ=environ)
        if sas is not None:
            stack.push_async_callback(sas.aclose)
        cache = CacheSettings(
            tag_ttl=settings.tag_ttl,
            negative_ttl=settings.negative_ttl,
            max_stale=settings.max_stale,
            # --max-facts bounds what a replica keeps in memory too (resolving in-process: memory or degraded).
            max_entries=min(CacheSettings().max_entries, settings.max_facts),
        )
        observer: FactsObserver | None = metrics
        regions = RegionAllowList.of(huawei=settings.hss_regions, aliyun=settings.acr_regions)
        hss_lookups: HssLookups[Any] | None = hss
        if hss is not None and inventory is not None:
            inventory.attach(hss)
            hss_lookups = MirroredHss(hss, inventory)
        resolver = FactResolver(
            settings.registries, hss_lookups, sas, settings=cache, observer=observer, regions=regions
        )
        stack.push_async_callback(resolver.aclose)
        yield resolver
