"""
One call to a cloud API, the same way for every vendor.

Each attempt goes through the same steps, in this order:

1. the deadline: no time left, no call (`TimedOut`);
2. the client-side quota of (cloud, API, credential): wait for a slot, unless
   the slot is further away than the deadline allows after keeping
   ``call_budget`` seconds for the call itself (`Throttled`, no call); every
   attempt takes a slot of its own, and settles it when the attempt is over
   (the window counts it then: the cloud may have counted it as late);
3. the vendor's ``send``, bounded by the time left;
4. credential errors raised while signing (`Unauthorized`, or `Unavailable`
   when the credential service failed);
5. transport failures: no HTTP answer (`TimedOut`, `Unavailable`);
6. the vendor's ``classify``: an `Answer`, or the `Failure` the answer means
   raised as `LookupFailed` (a cloud's ``Retry-After`` also holds the quota);
7. the observer and a DEBUG line, once per attempt, whatever happened;

and the attempts are retried by `call_with_retries` while the failure may
pass and the deadline allows. A vendor supplies only ``send`` and
``classify`` (a `Call`); everything above is decided here once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import httpx

from image_gate.clouds._common import transport_failure
from image_gate.clouds.credentials import CredentialsError, CredentialsUnavailable, mask
from image_gate.clouds.observe import CallObserver, NullObserver
from image_gate.clouds.quota import QuotaBook, QuotaExceeded, QuotaSlot, Rate, SlidingWindowLimiter
from image_gate.clouds.retry import RetryPolicy, call_with_retries
from image_gate.core.clock import Clock, Deadline, Sleep, monotonic, sleep
from image_gate.core.outcomes import Failure, LookupFailed, Throttled, TimedOut, Unauthorized, Unavailable

__all__ = [
    "Answer",
    "AnsweredNotFound",
    "Call",
    "CallOptions",
    "CallPipeline",
    "Identity",
    "credentials_within",
    "default_quota_margin",
]

T = TypeVar("T")

_log = logging.getLogger(__name__)
_DEFAULT_RETRY = RetryPolicy()


def default_quota_margin(rate: Rate) -> float:
    """5 % of the quota's period, at least 0.25 s.

    A gateway counts arrivals, not departures: a call that travels slower than
    the next one would otherwise land in the same window as it. Travel times
    vary by a fraction of a second whatever the period, hence the floor.
    """
    return max(0.25, 0.05 * rate.period)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a call is made as: the fingerprint keys the quota and names the caller in logs.

    ``key_id`` and ``secrets`` are what an upstream might echo back in an error
    message: the key id is replaced by its `mask`, a secret by ``<hidden>``.
    """

    fingerprint: str
    key_id: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def scrub(self, text: str) -> str:
        """``text`` without any credential of this identity in it."""
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, "<hidden>")
        if self.key_id and self.key_id in text:
            text = text.replace(self.key_id, mask(self.key_id))
        return text


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: its JSON object, request id, and how the observer names it."""

    body: Mapping[str, Any]
    request_id: str | None
    outcome: str = "found"
    """``found`` or ``not found`` (an empty list, a missing field): the ``outcome`` metrics label."""


class AnsweredNotFound(Exception):
    """The cloud answered that the resource does not exist (an error code, not an empty list).

    Raised by a vendor's ``classify``; the pipeline observes it as ``not found``
    and passes it on, for the caller to turn into a `NotFound` with its own words.
    """

    def __init__(self, request_id: str | None) -> None:
        super().__init__("not found")
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Call:
    """What a vendor supplies for one API call."""

    api: str
    send: Callable[[float], Awaitable[httpx.Response]]
    """Send the request, given the seconds left; the pipeline bounds it by them too."""
    classify: Callable[[httpx.Response], Answer]
    """Read the answer: an `Answer`, or raise `LookupFailed` (or `AnsweredNotFound`)."""
    identity: Identity
    where: str = ""
    """Where the call went (a region), for the DEBUG line."""


class CallOptions(TypedDict, total=False):
    """The keywords of `CallPipeline`, which each client takes as its own and passes on unchanged."""

    rate: Rate
    rates: Mapping[str, Rate] | None
    quota: QuotaBook | None
    quota_margin: float | None
    call_budget: float
    retry: RetryPolicy
    observer: CallObserver | None
    clock: Clock
    sleep: Sleep
    rng: Callable[[], float]


class CallPipeline:
    """Quota, deadline, retries, classification and observation of every call of one cloud.

    ``rate`` is the quota per API per credential, as the cloud states it
    (``rates`` per API name overrides it); the limiter spaces calls
    ``quota_margin`` seconds further apart (default: `default_quota_margin`).
    A wait for the quota leaves at least ``call_budget`` seconds of the
    deadline for the call itself, else the call is `Throttled` at once: a
    slot taken with no time left to use it would be spent for nothing.
    """

    def __init__(
        self,
        cloud: str,
        *,
        rate: Rate,
        rates: Mapping[str, Rate] | None = None,
        quota: QuotaBook | None = None,
        quota_margin: float | None = None,
        call_budget: float = 0.5,
        retry: RetryPolicy = _DEFAULT_RETRY,
        observer: CallObserver | None = None,
        clock: Clock = monotonic,
        sleep: Sleep = sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.cloud = cloud
        self._rate = rate
        self._rates = dict(rates or {})
        self._quota = quota or QuotaBook(clock=clock, sleep=sleep)
        self._quota_margin = quota_margin
        self._call_budget = call_budget
        self._retry = retry
        self._observer: CallObserver = observer or NullObserver()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng

    def rate(self, api: str) -> Rate:
        """The quota of one API, as the cloud states it (before the safety margin)."""
        return self._rates.get(api, self._rate)

    def limiter(self, api: str, fingerprint: str) -> SlidingWindowLimiter:
        rate = self.rate(api)
        margin = self._quota_margin if self._quota_margin is not None else default_quota_margin(rate)
        key: Hashable = (self.cloud, api, fingerprint)
        return self._quota.limiter(key, Rate(rate.calls, rate.period + margin))

    async def call(
        self, call: Call, *, deadline: Deadline, max_quota_wait: float | None = None, retry: RetryPolicy | None = None
    ) -> Answer:
        """The call's `Answer`, after retries; raises `LookupFailed` with the outcome (or `AnsweredNotFound`).

        ``max_quota_wait`` bounds the wait for the quota below what the deadline allows: 0 takes only a slot
        free right now, so a background caller (the HSS inventory mirror) never queues ahead of lookups
        that come after it (`Throttled` at once instead). ``retry`` replaces the pipeline's retry policy
        for this call (the mirror makes one attempt: a retry would be a second slot of the same window).
        """
        limiter = self.limiter(call.api, call.identity.fingerprint)

        async def attempt() -> Answer:
            return await self._attempt(call, limiter, deadline, max_quota_wait)

        policy = retry if retry is not None else self._retry
        return await call_with_retries(attempt, deadline=deadline, policy=policy, sleep=self._sleep, rng=self._rng)

    async def _attempt(
        self, call: Call, limiter: SlidingWindowLimiter, deadline: Deadline, max_quota_wait: float | None
    ) -> Answer:
        api = call.api
        remaining = deadline.remaining()
        if remaining <= 0:
            raise LookupFailed(TimedOut(cloud=self.cloud, api=api, detail="the deadline passed before the call"))
        slot = await self._slot(api, limiter, remaining, max_quota_wait)
        try:
            return await self._send_and_read(call, limiter, deadline)
        finally:
            slot.settle()  # the cloud counted the call by now, if it did: so does the window

    async def _send_and_read(self, call: Call, limiter: SlidingWindowLimiter, deadline: Deadline) -> Answer:
        api = call.api
        remaining = deadline.remaining()
        if remaining <= 0:
            raise LookupFailed(
                TimedOut(cloud=self.cloud, api=api, detail="the deadline passed while waiting for the quota")
            )

        started = self._clock()
        outcome = "unavailable"  # cancelled from outside: no answer came
        request_id: str | None = None
        try:
            answer = call.classify(await self._send(call, remaining))
            outcome, request_id = answer.outcome, answer.request_id
            return answer
        except LookupFailed as exc:
            outcome, request_id = exc.failure.kind, exc.failure.request_id
            retry_after = exc.failure.retry_after if isinstance(exc.failure, Throttled) else None
            if retry_after:
                limiter.hold(retry_after)  # the cloud said when: no call of ours goes before
            raise
        except AnsweredNotFound as exc:
            outcome, request_id = "not found", exc.request_id
            raise
        finally:
            seconds = self._clock() - started
            self._observer.upstream_call(cloud=self.cloud, api=api, outcome=outcome, seconds=seconds)
            _log.debug(
                "%s %s%s: %s in %.3fs (request id %s, credentials %s)",
                self.cloud,
                api,
                f" {call.where}" if call.where else "",
                outcome,
                seconds,
                request_id,
                call.identity.fingerprint,
            )

    async def _slot(
        self, api: str, limiter: SlidingWindowLimiter, remaining: float, max_quota_wait: float | None
    ) -> QuotaSlot:
        max_wait, bound = max(0.0, remaining - self._call_budget), "the deadline allows"
        if max_quota_wait is not None and max_quota_wait < max_wait:
            max_wait, bound = max(0.0, max_quota_wait), "the caller waits"
        try:
            slot = await limiter.take(max_wait=max_wait)
        except QuotaExceeded as exc:
            raise LookupFailed(
                Throttled(
                    cloud=self.cloud,
                    api=api,
                    detail=f"the client-side quota ({self.rate(api)} per credential) has no free slot "
                    f"for {exc.wait:.1f}s, longer than {bound}",
                    retry_after=exc.wait,
                )
            ) from None
        if slot.waited > 0:  # the limiter reads its clock once: a free slot waits exactly 0
            self._observer.quota_wait(cloud=self.cloud, api=api, seconds=slot.waited)
        return slot

    async def _send(self, call: Call, remaining: float) -> httpx.Response:
        scrub = call.identity.scrub
        try:
            async with asyncio.timeout(remaining):
                return await call.send(remaining)
        except CredentialsError as exc:
            raise LookupFailed(_credentials_failure(exc, self.cloud, call.api, scrub(str(exc)))) from None
        except (httpx.HTTPError, TimeoutError) as exc:
            failure = transport_failure(exc, cloud=self.cloud, api=call.api)
            raise LookupFailed(_with_detail(failure, scrub(failure.detail))) from None


async def credentials_within(fetch: Callable[[], Awaitable[T]], *, cloud: str, api: str, deadline: Deadline) -> T:
    """The current credentials, before a call needs them (their fingerprint keys the quota).

    A slow credential service costs at most the time left; its failures become
    the outcome of the call, as they would if the signer met them.
    """
    try:
        async with asyncio.timeout(max(deadline.remaining(), 0.001)):
            return await fetch()
    except TimeoutError:
        raise LookupFailed(
            TimedOut(cloud=cloud, api=api, detail="no credentials within the time left (credential service slow)")
        ) from None
    except CredentialsError as exc:
        raise LookupFailed(_credentials_failure(exc, cloud, api, str(exc))) from None


def _credentials_failure(exc: CredentialsError, cloud: str, api: str, message: str) -> Failure:
    """The outcome of a credential source's failure; its message names who image-gate is (log only).

    A credential service's message names the IAM user and account, the role
    ARN or the Pod Identity URI: the detail keeps it for image-gate's log, and
    pod creators read the `Failure.public_message` (generic for `Unauthorized`,
    ``public_detail`` for `Unavailable`).
    """
    detail = f"no credentials: {message}"
    ids = {"code": exc.code, "request_id": exc.request_id}
    if isinstance(exc, CredentialsUnavailable):
        public = "no credentials: image-gate's credential service did not answer usefully (see image-gate's log)"
        return Unavailable(cloud=cloud, api=api, detail=detail, public_detail=public, **ids)
    return Unauthorized(cloud=cloud, api=api, detail=detail, **ids)


def _with_detail(failure: Failure, detail: str) -> Failure:
    return failure if detail == failure.detail else type(failure)(cloud=failure.cloud, api=failure.api, detail=detail)
