"""
A small JSON client for the few writes image-gate makes outside kopf's handlers.

kopf's own API calls happen inside its handlers, with the credentials its
``@kopf.on.login`` handler returned. The Lease loop and the fact store work
beside kopf (kopf stays ``--standalone``), so they talk to the API server
through this client, logged in the same way: `login` returns the same
`kopf.ConnectionInfo` (service account in a pod, else the kubeconfig) and
kopf's own helpers turn it into TLS settings and headers. A 401 logs in again
once (service-account tokens are rotated on disk), so a long-running replica
never holds a dead token.

Answers are JSON objects; an error is an `ApiError` carrying the HTTP status
and the API server's ``reason`` (``Conflict``, ``AlreadyExists``, ...), so
callers can tell "someone else wrote first" from "the API server is down".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp
import kopf

__all__ = ["ApiError", "KubeApi", "login"]

logger = logging.getLogger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"
_JSON: Final = "application/json"


class ApiError(Exception):
    """The API server answered with an error, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def conflict(self) -> bool:
        """The object changed since it was read (resourceVersion), or already exists."""
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def forbidden(self) -> bool:
        return self.status in (401, 403)


def login() -> kopf.ConnectionInfo:
    """The credentials kopf's login handler uses: in-cluster service account first, else the kubeconfig."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise ApiError(0, "NoCredentials", "no in-cluster service account and no kubeconfig to log in with")
    return info


class KubeApi:
    """JSON requests to one API server, on one aiohttp session."""

    def __init__(
        self,
        credentials: Callable[[], kopf.ConnectionInfo] = login,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._lock = asyncio.Lock()

    @property
    def server(self) -> str:
        return self._server

    async def _connect(self, *, again: bool = False) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is not None and not again:
                return self._session
            if self._session is not None:
                await self._session.close()
            info = self._credentials()
            self._server = info.server.rstrip("/")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
                headers={**info.as_http_headers(), "User-Agent": "image-gate"},
                auth=info.as_aiohttp_basic_auth(),
                timeout=self._timeout,
            )
            return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = _JSON,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The answer's JSON object; `ApiError` for an error answer or no answer at all."""
        for attempt in range(2):
            session = await self._connect(again=attempt > 0)
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": content_type, "Accept": _JSON} if data is not None else {"Accept": _JSON}
            try:
                async with session.request(
                    method, self._server + path, data=data, headers=headers, params=params
                ) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, "Unreachable", f"{method} {path}: {type(exc).__name__}: {exc}") from None
            if status == 401 and attempt == 0:
                logger.info("the API server refused our token; logging in again")
                continue
            return _answer(status, text, method, path)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _answer(status: int, text: str, method: str, path: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text else {}
    except (ValueError, RecursionError):  # a body nested past the recursion limit is no answer either
        data = {}
    if not isinstance(data, dict):
        data = {}
    if status < 300:
        return data
    reason = str(data.get("reason") or "Error")
    message = str(data.get("message") or text[:200] or f"{method} {path}")
    raise ApiError(status, reason, message)
