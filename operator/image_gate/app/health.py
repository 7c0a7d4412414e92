"""
``/healthz``, ``/readyz`` and ``/metrics`` on their own HTTPS port.

A separate port, because kopf's webhook server serves only the handler paths,
and because probes and scrapes should not queue behind admission reviews. It
uses the webhook's serving certificate (and follows its rotation), so nothing
image-gate serves is plain HTTP.

* ``/healthz`` -- the process and its event loop are alive.
* ``/readyz`` -- the policy and namespace indexes are loaded and the webhook
  server is listening: only then should the Service send reviews here.
* ``/metrics`` -- Prometheus text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from image_gate.app.certs import ReloadingContext
from image_gate.app.metrics import Metrics
from image_gate.kube.readiness import Readiness

__all__ = ["serve_health"]

logger = logging.getLogger(__name__)


def build_health_app(readiness: Readiness, metrics: Metrics) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if readiness.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {readiness.reason()}\n")

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def serve_health(
    *,
    address: str,
    port: int,
    tls: ReloadingContext,
    readiness: Readiness,
    metrics: Metrics,
    reload_interval: float = 60.0,
) -> None:
    """Serve until cancelled, re-reading the certificate every ``reload_interval`` seconds."""
    runner = web.AppRunner(build_health_app(readiness, metrics), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, address, port, ssl_context=tls.context).start()
        logger.info("health and metrics served on https://%s:%d", address, port)
        while True:
            await asyncio.sleep(reload_interval)
            tls.reload_if_changed()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
