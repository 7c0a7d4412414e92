"""A generated cloud: an httpx transport that serves, call after call, the answers a fuzz case drew.

The cloud clients are real (signing, quota, retries, deadline, classification); only the server at the
other end is generated, at the HTTP level: a status, headers and a body, or no answer at all (a refused
or cut connection, or one that never answers). It is not a mock of image-gate's code: it is the far
side of the wire, as cloudsim's ``answer`` fault is, without a socket (thousands of cases per run).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

__all__ = ["CUT_OFF", "NEVER", "REFUSED", "GeneratedCloud", "Reply"]

REFUSED = "refused"
CUT_OFF = "cut off"
NEVER = "never answers"


@dataclass(frozen=True)
class Reply:
    """One answer of the generated cloud: an HTTP response, or one of `REFUSED`, `CUT_OFF`, `NEVER`."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    failure: str | None = None


@dataclass
class GeneratedCloud(httpx.AsyncBaseTransport):
    """Serves ``replies`` in turn, the last one again once they run out; records the requests."""

    replies: list[Reply]
    requests: list[httpx.Request] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        reply = self.replies[min(len(self.requests), len(self.replies) - 1)]
        self.requests.append(request)
        if reply.failure == REFUSED:
            raise httpx.ConnectError("connection refused", request=request)
        if reply.failure == CUT_OFF:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        if reply.failure == NEVER:
            await asyncio.sleep(3600)
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body, request=request)
