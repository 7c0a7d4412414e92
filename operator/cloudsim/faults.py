"""
Fault injection and call counting, per API, for tests and the demo.

A test says what the next calls to an API should suffer::

    sim.faults.add(Fault(api="ListRegistryImages", kind="throttle", retry_after=2, times=1))

and reads how many calls each API served (``sim.calls["DescribeImage"]``).
The same is reachable over HTTP on every simulator: ``POST /_sim/faults``
(a Fault as JSON), ``DELETE /_sim/faults``, ``GET /_sim/calls``.

Kinds:

* ``latency``   -- answer normally after ``seconds``.
* ``timeout``   -- hold the request ``seconds`` (default 3600), then drop it.
* ``error``     -- answer ``status`` (default 500) with the cloud's error body.
* ``throttle``  -- answer the cloud's throttling response, with ``retry_after`` seconds as hint.
* ``malformed`` -- answer 200 with a body that is not the documented JSON.
* ``auth``      -- reject the signature as the gateway would.
* ``answer``    -- answer ``status`` (default 200) with ``body`` as JSON instead of the real
  answer: any shape a test needs, over real HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from aiohttp import web

__all__ = ["Fault", "FaultBook", "FaultKind", "hold", "suffer_common_fault"]

FaultKind = Literal["latency", "timeout", "error", "throttle", "malformed", "auth", "answer"]
_KINDS = ("latency", "timeout", "error", "throttle", "malformed", "auth", "answer")


@dataclass(frozen=True, slots=True)
class Fault:
    api: str
    """The API name (``ListRegistryImages``, ``DescribeImage``, ...), or ``*`` for all."""
    kind: FaultKind
    times: int | None = None
    """How many calls suffer it; None: until cleared."""
    seconds: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    body: Any = None
    """For ``answer``: the JSON document to send."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        if data.get("kind") not in _KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(_KINDS)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultBook:
    """Faults waiting to happen, and calls counted. Thread-safe: tests poke it from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[list[Any]] = []  # [fault, remaining]
        self.calls: Counter[str] = Counter()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append([fault, fault.times])

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.calls.clear()

    def count(self, api: str) -> None:
        with self._lock:
            self.calls[api] += 1

    def take(self, api: str) -> Fault | None:
        """The fault the next call to ``api`` suffers, if any (consumed)."""
        with self._lock:
            for entry in self._faults:
                fault, remaining = entry
                if fault.api in (api, "*") and (remaining is None or remaining > 0):
                    if remaining is not None:
                        entry[1] = remaining - 1
                    return fault  # type: ignore[no-any-return]
            return None

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)


_MALFORMED_BODY = "<html><body>502 Bad Gateway</body></html>"


async def hold(request: web.Request, seconds: float) -> None:
    """Wait ``seconds``, or until the client hangs up: a held request must not outlive its caller."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(min(0.05, left))


async def suffer_common_fault(request: web.Request, fault: Fault) -> web.StreamResponse | None:
    """The faults that look the same in every cloud: slowness, silence and garbage.

    Returns the response to send instead of the real one (``timeout``, ``malformed``),
    or None to go on serving (after a ``latency`` delay, or for the cloud-specific
    kinds, which each simulator renders in its own error format).
    """
    if fault.kind == "latency":
        await hold(request, fault.seconds)
    elif fault.kind == "timeout":
        await hold(request, fault.seconds or 3600.0)
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=504)
    elif fault.kind == "malformed":
        return web.Response(status=200, text=_MALFORMED_BODY, content_type="text/html")
    elif fault.kind == "answer":
        return web.json_response(fault.body, status=fault.status or 200)
    return None
