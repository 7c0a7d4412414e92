"""
``/healthz``, ``/readyz`` and ``/metrics`` on their own HTTPS port.

A separate port, because kopf's webhook server serves only the handler paths,
and because probes and scrapes should not queue behind admission reviews. It
uses the webhook's serving certificate (and follows its rotation), so nothing
image-gate serves is plain HTTP.

* ``/healthz`` -- the process and its event loop are alive.
* ``/readyz`` -- the policy and namespace indexes are loaded and the webhook
  server is listening: only then should the Service send reviews here. The
  lines after the verdict name each cloud's circuit breaker state: an open
  circuit does not make the replica unready (it judges on cached facts, or
  ``onUnresolved`` decides), but whoever looks at the probe should see it.
* ``/metrics`` -- Prometheus text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from image_gate.app.certs import ReloadingContext
from image_gate.app.metrics import Metrics
from image_gate.facts.breaker import CircuitBreaker
from image_gate.kube.readiness import Readiness

__all__ = ["build_health_app", "readiness_report", "serve_health"]

logger = logging.getLogger(__name__)


def readiness_report(readiness: Readiness, breakers: Sequence[CircuitBreaker] = ()) -> tuple[int, str]:
    """``/readyz``'s status and text: the verdict on the first line, then one line per circuit breaker."""
    status, verdict = (200, "ready") if readiness.ready else (503, f"not ready: {readiness.reason()}")
    lines = [verdict] + [f"{breaker.cloud} circuit breaker: {breaker.state.value}" for breaker in breakers]
    return status, "".join(f"{line}\n" for line in lines)


def build_health_app(
    readiness: Readiness, metrics: Metrics, breakers: Sequence[CircuitBreaker] = ()
) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        status, text = readiness_report(readiness, breakers)
        return web.Response(status=status, text=text)

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
    breakers: Sequence[CircuitBreaker] = (),
    reload_interval: float = 60.0,
) -> None:
    """Serve until cancelled, re-reading the certificate every ``reload_interval`` seconds."""
    runner = web.AppRunner(build_health_app(readiness, metrics, breakers), access_log=None)
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
