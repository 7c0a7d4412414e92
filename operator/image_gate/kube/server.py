"""
The HTTPS server that carries AdmissionReviews to kopf's handlers (kopf's ``WebhookServerProtocol``).

kopf stays the webhook framework: the handlers are kopf's, and kopf's own
function (``fn``) turns a review into a response. Only the server around it is
ours, because ``kopf.WebhookServer``:

* keeps aiohttp's 1 MiB body limit, while an UPDATE review (object and
  oldObject) can legally reach the API server's ~3 MiB request limit;
* answers a body it cannot parse, or a review of a shape it does not expect,
  with a bare HTTP 500;
* closes its listener to load a rotated certificate (reviews in that gap
  fail) and stops the operator on a half-written pair;
* cannot be drained: it closes the moment the operator stops.

Here the caller hands in an `ssl.SSLContext` that it keeps current itself
(`image_gate.app.certs.ReloadingContext`): the listener never closes. Every
request gets a 200 with a verdict, a 4xx that says why, or -- only when
judging itself failed -- a 500, so the webhook's failurePolicy applies.

Past capacity, a review that could not be answered before the API server's
``timeout`` (or the configured deadline) is refused as it arrives, with a 429
that says so (`image_gate.kube.overload`), and every review admitted must
answer by that time (`image_gate.core.admission.ANSWER_BY`).

Bodies are read and answers written with orjson: the standard library's
``json`` was about a twentieth of a warm review's CPU. The reviewed object's
parts reach kopf as `_KeptOnCopy` dicts: after every review kopf deep-copies
the whole object to diff it against the handlers' patch, before it looks
whether there is one (``kopf.Patch.as_json_patch``); image-gate's handlers only
validate, never patch, so nothing reads that copy (~3 % of a warm review's CPU).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
import orjson
from aiohttp import log as aiohttp_log
from aiohttp import web
from kopf._core.engines import admission

from image_gate.core.admission import ANSWER_BY
from image_gate.core.clock import Deadline
from image_gate.kube.overload import LoadShedder, parse_timeout
from image_gate.kube.webhook import guarded

__all__ = ["DEFAULT_MAX_REVIEW_BYTES", "ReviewServer"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_REVIEW_BYTES = 4 * 1024 * 1024
"""Above the API server's own ~3 MiB request limit, so every review it can send fits."""

_JSON = "application/json"
_ANSWER_SHARE = 0.9
_INTERNAL_ERROR = "image-gate failed while judging this review; its log has the details\n"


@dataclass(kw_only=True, eq=False)
class ReviewServer:
    """Serves ``POST /<handler id>`` over HTTPS until cancelled; see the module docstring for why not kopf's.

    ``on_listening`` is called once the socket listens (readiness). `drain` makes every
    later response close its connection, so clients reconnect -- through the Service, to
    a replica that is not stopping -- instead of reusing a connection about to close.
    When cancelled (the operator stops), the listener closes and reviews already being
    judged finish, up to ``shutdown_timeout`` seconds.
    """

    address: str
    port: int
    ssl_context: ssl.SSLContext | None
    url_host: str
    max_review_bytes: int = DEFAULT_MAX_REVIEW_BYTES
    on_listening: Callable[[], None] = lambda: None
    shutdown_timeout: float = 30.0
    access_log: bool = False
    """aiohttp's line per request (``--debug-http-logs``); off, image-gate's review line is the only one."""
    shedder: LoadShedder | None = None
    """Refuses what cannot be answered in time; None: every review is queued, however long."""
    on_shed: Callable[[], None] = lambda: None
    """Called for each review refused (the metric)."""
    draining: bool = field(default=False, init=False)

    def drain(self) -> None:
        self.draining = True

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        judge = guarded(fn)
        limit = self.max_review_bytes
        shedder = self.shedder

        async def serve(request: web.Request) -> web.StreamResponse:
            if shedder is None:
                response = await _answer(judge, request, limit)
            else:
                budget = parse_timeout(request.query.get("timeout"))
                refusal = shedder.refusal(budget)
                if refusal is not None:
                    self.on_shed()
                    response = web.Response(status=429, text=refusal, headers={"Retry-After": "1"})
                else:
                    shedder.started()
                    # The API server's timeout runs from before the review arrived, and the answer still has
                    # to travel: the review gets nine tenths of it, counted from now.
                    token = ANSWER_BY.set(None if budget is None else Deadline.after(budget * _ANSWER_SHARE))
                    try:
                        # One turn of the loop first, so that every review that has arrived is counted in
                        # flight before this one takes the CPU: a warm review never waits on anything else,
                        # and the queue would otherwise wait unseen, ahead of the shedder.
                        await asyncio.sleep(0)
                        response = await _answer(judge, request, limit)
                    finally:
                        ANSWER_BY.reset(token)
                        shedder.finished()
            if self.draining:
                response.force_close()
            return response

        # The limit is also aiohttp's, so a chunked body is cut off while it streams in.
        app = web.Application(client_max_size=limit)
        app.router.add_post("/{webhook}", serve)
        # auto_decompress off: a review is never compressed, and aiohttp's decompressor failing mid-body left
        # the request unanswered; `_answer` refuses any Content-Encoding instead.
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=aiohttp_log.access_logger if self.access_log else None,
            shutdown_timeout=self.shutdown_timeout,
            auto_decompress=False,
        )
        await runner.setup()
        try:
            # reuse_port (as kopf's server does): connections a previous process closed can linger
            # in FIN_WAIT2 for a minute, and a quick restart would otherwise fail to bind.
            site = web.TCPSite(
                runner, self.address, self.port, ssl_context=self.ssl_context, reuse_address=True, reuse_port=True
            )
            await site.start()
            self.port = runner.addresses[0][1]  # the real one when asked for port 0
            scheme = "https" if self.ssl_context else "http"
            logger.info("admission reviews served on %s://%s:%d", scheme, self.address, self.port)
            self.on_listening()
            yield kopf.WebhookClientConfig(url=f"{scheme}://{self.url_host}:{self.port}")
            await asyncio.Event().wait()  # until the operator stops and cancels this
        finally:
            await runner.cleanup()  # closes the listener, then waits for the reviews in flight


async def _answer(judge: kopf.WebhookFn, request: web.Request, limit: int) -> web.Response:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    # The API server never compresses a review; a body that claims an encoding is refused unread (a lying
    # "deflate" body went unanswered about half the time while aiohttp decompressed it: tests/fuzz).
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in {"", "identity"}:
        raise web.HTTPUnsupportedMediaType(
            text="image-gate reads AdmissionReviews without a Content-Encoding (the API server sends none)\n"
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    try:
        review: Any = _loads(body)
    except RecursionError:
        raise web.HTTPBadRequest(text="the body nests deeper than image-gate reads JSON\n") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}\n") from None
    _keep_object_on_copy(review)
    try:
        response = await judge(review, webhook=request.match_info["webhook"])
    except web.HTTPException:
        raise
    except admission.WebhookError as exc:  # kopf's own refusals of a review's shape; review_problem comes first
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    except RecursionError:  # kopf walks the objects (its diff of old and new) before any handler runs
        raise web.HTTPBadRequest(text="the review's objects nest deeper than image-gate reads\n") from None
    except Exception:
        logger.exception("an admission review failed")
        raise web.HTTPInternalServerError(text=_INTERNAL_ERROR) from None
    return web.Response(body=_dumps(response), content_type=_JSON)


class _KeptOnCopy(dict[str, Any]):
    """A part of the reviewed object (its metadata, spec, status) that `copy.deepcopy` hands back as it is.

    kopf copies the object only to apply a patch to the copy (``Patch.as_json_patch``), and a validating
    handler writes none: the copy would never be read, nor the object changed.
    """

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> _KeptOnCopy:
        return self


def _keep_object_on_copy(review: Any) -> None:
    """Wrap the object's parts in `_KeptOnCopy` (a shallow copy of each); anything not shaped so is left to
    `image_gate.kube.webhook.review_problem`."""
    request = review.get("request") if isinstance(review, dict) else None
    new = request.get("object") if isinstance(request, dict) else None
    if isinstance(new, dict):
        for key, value in list(new.items()):
            if type(value) is dict:
                new[key] = _KeptOnCopy(value)


def _loads(body: bytes) -> Any:
    """orjson, and the standard library for what orjson refuses (NaN, nesting past 1,024, a BOM), so that
    what it accepts, and the words of a refusal, stay the standard library's."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _dumps(response: Any) -> bytes:
    try:
        return orjson.dumps(response)
    except TypeError:  # what orjson does not write (an int past 64 bits): the standard library does
        return json.dumps(response).encode()


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=0,
        text=f"image-gate reads AdmissionReviews of at most {limit} bytes (--max-review-bytes)\n",
    )
