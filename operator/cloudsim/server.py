"""
Running the simulators: shared state, control routes, and a runner for tests.

`Simulators` starts the HSS and SAS simulators on loopback in a thread of its
own, with its own event loop, so that both async tests (our clients) and
synchronous ones (the vendors' SDKs, which block) can call them::

    with Simulators(Catalogue.load()) as sim:
        sim.hss_url, sim.sas_url          # base URLs
        sim.state.faults.add(Fault(...))  # inject faults
        sim.state.faults.calls            # calls per API
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

from cloudsim.catalogue import Catalogue
from cloudsim.faults import Fault, FaultBook
from image_gate.clouds.huawei import DEFAULT_RATE as HSS_QUOTA
from image_gate.clouds.quota import Rate

__all__ = ["HSS_QUOTA", "SimState", "Simulators", "add_control_routes"]


@dataclass
class SimState:
    """What both simulators share. Tests may change any field between calls."""

    catalogue: Catalogue
    faults: FaultBook = field(default_factory=FaultBook)
    clock: Callable[[], float] = time.time
    """Wall clock used to check request timestamps (X-Sdk-Date, x-acs-date) for skew."""
    hss_rate: Rate | None = HSS_QUOTA
    """HSS's published quota per user per API (the one image-gate paces itself by); None turns it off."""
    sas_rate: Rate | None = None
    """SAS publishes no quota; tests may set one."""
    max_skew: float = 15 * 60.0
    """Both gateways reject a request timestamp more than 15 minutes off."""
    iam_users: tuple[tuple[str, str, str], ...] = ()
    """IAM users (name, password, domain) known besides ``cloudsim.hss_auth.DEFAULT_IAM_USERS``."""


def add_control_routes(app: web.Application, state: SimState) -> None:
    """The ``/_sim`` routes every simulator serves, for tests and the demo."""

    async def add_fault(request: web.Request) -> web.Response:
        try:
            state.faults.add(Fault.from_json(await request.json()))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"ok": True})

    async def calls(request: web.Request) -> web.Response:
        return web.json_response(state.faults.snapshot())

    app.router.add_post("/_sim/faults", add_fault)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_get("/_sim/calls", calls)


class Simulators:
    """Both simulators on 127.0.0.1, in a background thread."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        host: str = "127.0.0.1",
        hss_port: int = 0,
        sas_port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        state: SimState | None = None,
    ) -> None:
        self.state = state or SimState(catalogue=catalogue)
        self._host = host
        self._ports = {"hss": hss_port, "sas": sas_port}
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cloudsim", daemon=True)
        self._runners: list[web.AppRunner] = []
        self.urls: dict[str, str] = {}

    @property
    def hss_url(self) -> str:
        return self.urls["hss"]

    @property
    def sas_url(self) -> str:
        return self.urls["sas"]

    def start(self) -> Simulators:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Simulators:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def describe(self) -> str:
        return json.dumps(self.urls)

    async def _start(self) -> None:
        from cloudsim import hss, sas  # the servers import this module's SimState

        scheme = "https" if self._ssl else "http"
        for name, build in (("hss", hss.build_app), ("sas", sas.build_app)):
            app = build(self.state)
            add_control_routes(app, self.state)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._ports[name], ssl_context=self._ssl)
            await site.start()
            self._runners.append(runner)
            port = runner.addresses[0][1]
            self.urls[name] = f"{scheme}://{self._host}:{port}"

    async def _stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
