"""
Small pieces both cloud clients need, kept in one place so they behave alike.

* `tls_verify` turns the ``verify`` option users give (a bool, a CA bundle
  path, or an `ssl.SSLContext`) into what httpx 0.28 accepts without a
  deprecation warning.
* `transport_failure` names the `Failure` for an exception that httpx (or an
  ``asyncio.timeout``) raised before any answer arrived.
* `json_object` reads a response body as a JSON object, or says it is not one,
  without raising: cloud error pages are sometimes HTML from a load balancer.
* `Refresher` holds an expiring value (temporary credentials, tokens) and
  renews it ahead of expiry, once for all concurrent callers.

Nothing here knows a vendor's wire format.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from image_gate.core.outcomes import Failure, TimedOut, Unavailable

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "AsyncClosing",
    "Refresher",
    "TlsVerify",
    "WallClock",
    "fingerprint",
    "first_text",
    "http_client",
    "json_object",
    "tls_verify",
    "transport_failure",
]

T = TypeVar("T")

WallClock = Callable[[], float]
"""Seconds since the epoch (``time.time``): for timestamps a server compares with its own clock."""

TlsVerify = bool | str | os.PathLike[str] | ssl.SSLContext
"""``True`` (system CAs), ``False`` (no verification: tests only), a CA bundle file, or a ready context."""

_log = logging.getLogger(__name__)


def fingerprint(text: str) -> str:
    """A short, stable, one-way name for an identity (an AK, a role ARN): for quota keys, metrics and logs."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def tls_verify(verify: TlsVerify) -> bool | ssl.SSLContext:
    """What to pass to httpx as ``verify``; a CA file becomes a context (httpx 0.28 deprecates paths)."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    return ssl.create_default_context(cafile=os.fspath(verify))


def http_client(
    *,
    auth: httpx.Auth,
    verify: TlsVerify,
    transport: httpx.AsyncBaseTransport | None,
    headers: dict[str, str],
    base_url: str = "",
) -> httpx.AsyncClient:
    """The pooled connections of one cloud client: its signer, the TLS it trusts, never a redirect.

    A redirect would carry a signed request to a host that did not ask for it.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        verify=tls_verify(verify),
        transport=transport,
        headers=headers,
        follow_redirects=False,
    )


def transport_failure(exc: BaseException, *, cloud: str, api: str) -> Failure:
    """The outcome for a call that got no HTTP answer: timed out, or could not connect / was cut off."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return TimedOut(cloud=cloud, api=api, detail="no answer within the time left for the lookup")
    # The exception text of httpx transport errors names the host and the OS error, never headers.
    reason = type(exc).__name__
    text = str(exc).strip()
    if text:
        reason += f": {text[:200]}"
    return Unavailable(cloud=cloud, api=api, detail=f"the request failed before an answer arrived ({reason})")


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is empty, not JSON, or JSON but not an object.

    A body nested deeper than the interpreter's recursion limit is not an answer either: json raises
    RecursionError on it, which would otherwise escape every lookup (found by tests/fuzz).
    """
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def first_text(body: Mapping[str, object] | None, *names: str) -> str | None:
    """The first of ``names`` that ``body`` holds as a non-empty string (vendors spell fields several ways)."""
    if body is None:
        return None
    for name in names:
        value = body.get(name)
        if isinstance(value, str) and value:
            return value
    return None


class AsyncClosing:
    """``async with`` for anything that has an ``aclose``: the clients hold connection pools."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Refresher(Generic[T]):
    """An expiring value, renewed ``refresh_before`` seconds ahead of its expiry.

    ``fetch`` returns the value and when it expires (seconds since the epoch,
    or None for never). At most one renewal runs at a time, as a task of its
    own: callers that arrive meanwhile share it instead of starting another,
    so a hundred admissions arriving together cost one call to the token
    service, and a caller that gives up (deadline passed, cancelled) does not
    cancel it; the next caller finds the fresh value.

    * No value yet, or the value has expired: callers wait for the renewal.
    * The value is in its last ``refresh_before`` seconds but still valid:
      callers get it at once while the renewal runs in the background, so a
      slow token service never delays a request that holds a valid value.
    * A renewal failed: a still-valid value keeps being served, and renewal is
      tried again after ``failure_backoff`` seconds. Without a usable value the
      failure is raised, and repeated to callers within ``failure_backoff``
      without calling again, so a broken token service is not hammered.
      ``backoff`` replaces the fixed wait: given how many renewals in a row have
      failed and the last failure, it says how long to wait before the next
      (IAM password logins back off exponentially: every refused one counts
      towards IAM's lock-out). A success starts the count again.
    """

    def __init__(
        self,
        fetch: Callable[[], Coroutine[Any, Any, tuple[T, float | None]]],
        *,
        clock: WallClock = time.time,
        refresh_before: float = 15 * 60.0,
        failure_backoff: float = 5.0,
        backoff: Callable[[int, BaseException], float] | None = None,
        name: str = "value",
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._refresh_before = refresh_before
        self._failure_backoff = failure_backoff
        self._backoff = backoff
        self._failures = 0
        self._wait = failure_backoff
        self._name = name
        self._value: T | None = None
        self._expires_at: float | None = None
        self._task: asyncio.Task[tuple[T, float | None]] | None = None
        self._failed_at: float | None = None
        self._failure: BaseException | None = None
        self.refreshes = 0
        """How many renewals were started (for tests and metrics)."""

    @property
    def expires_at(self) -> float | None:
        return self._expires_at

    def retry_in(self) -> float:
        """Seconds until the next renewal may be tried after a failure (0 when it may now)."""
        if self._failed_at is None:
            return 0.0
        return max(0.0, self._failed_at + self._wait - self._clock())

    def peek(self) -> T | None:
        """The current value if it is still fresh, without any I/O."""
        return self._value if self._value is not None and not self._stale() else None

    async def get(self) -> T:
        """A usable value; renews it first when there is none, in the background when it is nearly expired."""
        if self._value is not None and not self._stale():
            return self._value
        usable = self._usable()
        if self._in_backoff():
            if usable:
                assert self._value is not None
                return self._value
            assert self._failure is not None
            raise self._failure
        task = self._start()
        if usable:
            assert self._value is not None
            return self._value
        value, _ = await asyncio.shield(task)
        return value

    async def wait_idle(self) -> None:
        """Wait for a renewal in flight, if any, to end (its failure is not raised here)."""
        task = self._task
        if task is not None:
            await asyncio.wait([task])

    def _start(self) -> asyncio.Task[tuple[T, float | None]]:
        task = self._task
        if task is None:
            task = self._task = asyncio.get_running_loop().create_task(self._fetch())
            self.refreshes += 1
            task.add_done_callback(self._settle)
        return task

    def invalidate(self) -> None:
        """Forget the value (the server refused it), so the next `get` renews it."""
        self._value = None
        self._expires_at = None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # its cancellation or its own failure: both are moot now

    def _settle(self, task: asyncio.Task[tuple[T, float | None]]) -> None:
        if self._task is task:
            self._task = None
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            self._failed_at = self._clock()
            self._failure = failure
            self._failures += 1
            self._wait = self._backoff(self._failures, failure) if self._backoff else self._failure_backoff
            if self._usable():
                _log.warning("renewing the %s failed (%s); using the current one until it expires", self._name, failure)
            return
        self._value, self._expires_at = task.result()
        self._failed_at = None
        self._failure = None
        self._failures = 0

    def _stale(self) -> bool:
        return self._expires_at is not None and self._clock() >= self._expires_at - self._refresh_before

    def _usable(self) -> bool:
        return self._value is not None and (self._expires_at is None or self._clock() < self._expires_at)

    def _in_backoff(self) -> bool:
        return self._failed_at is not None and self._clock() - self._failed_at < self._wait
