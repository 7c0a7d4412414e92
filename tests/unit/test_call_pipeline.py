"""The call pipeline both cloud clients share: deadline, quota, send, credential and transport errors,
classification, observation and retries, on a fake clock with real httpx responses and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from image_gate.clouds.credentials import CredentialsError, CredentialsUnavailable, mask
from image_gate.clouds.pipeline import (
    Answer,
    AnsweredNotFound,
    Call,
    CallPipeline,
    Identity,
    credentials_within,
    default_quota_margin,
)
from image_gate.clouds.quota import QuotaBook, Rate
from image_gate.clouds.retry import RetryPolicy
from image_gate.core.clock import Deadline
from image_gate.core.outcomes import (
    BadResponse,
    LookupFailed,
    Throttled,
    TimedOut,
    Unauthorized,
    Unavailable,
)
from tests.recorder import Recorder

API = "DescribeThing"
KEY_ID = "AKIDEXAMPLEKEY000001"
SECRET = "the-secret-key-value"
IDENTITY = Identity("fp-1", KEY_ID, (SECRET,))
REQUEST = httpx.Request("GET", "https://cloud.example/thing")
PLENTY = Rate(100, 1.0)


class FakeTime:
    """A clock that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def deadline(self, seconds: float) -> Deadline:
        return Deadline.after(seconds, clock=self.clock)


class Upstream:
    """The vendor side: answers (or raises) from a script, and counts what it was sent."""

    def __init__(self, *script: httpx.Response | BaseException) -> None:
        self.script = list(script)
        self.sent = 0
        self.timeouts: list[float] = []

    async def send(self, remaining: float) -> httpx.Response:
        self.sent += 1
        self.timeouts.append(remaining)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step

    @staticmethod
    def classify(response: httpx.Response) -> Answer:
        if response.status_code == 429:
            wait = float(response.headers.get("Retry-After", "0"))
            raise LookupFailed(Throttled(cloud="test", api=API, detail="slow down", retry_after=wait))
        if response.status_code == 404:
            raise AnsweredNotFound(response.headers.get("X-Request-Id"))
        if response.status_code >= 500:
            raise LookupFailed(Unavailable(cloud="test", api=API, detail=f"HTTP {response.status_code}"))
        if response.status_code >= 400:
            raise LookupFailed(BadResponse(cloud="test", api=API, detail=f"HTTP {response.status_code}"))
        body = response.json()
        return Answer(body, response.headers.get("X-Request-Id"), "found" if body else "not found")

    def call(self, identity: Identity = IDENTITY) -> Call:
        return Call(API, self.send, self.classify, identity, where="region-1")


def ok(body: dict[str, object] | None = None, *, request_id: str = "req-1") -> httpx.Response:
    return httpx.Response(200, json={"thing": 1} if body is None else body, headers={"X-Request-Id": request_id})


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={}, headers=headers)


def pipeline(
    time: FakeTime,
    recorder: Recorder,
    *,
    rate: Rate = PLENTY,
    quota_margin: float | None = 0.0,
    attempts: int = 3,
    rng: Callable[[], float] = lambda: 0.0,
    **options: float,
) -> CallPipeline:
    return CallPipeline(
        "test",
        rate=rate,
        quota=QuotaBook(clock=time.clock, sleep=time.sleep),
        quota_margin=quota_margin,
        retry=RetryPolicy(attempts=attempts, base_delay=0.2, max_delay=5.0),
        observer=recorder,
        clock=time.clock,
        sleep=time.sleep,
        rng=rng,
        **options,
    )


# -- the answer and its observation -----------------------------------------------------------------------------


async def test_an_answer_is_returned_and_observed_once() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(ok())
    answer = await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(3.0))
    assert answer == Answer({"thing": 1}, "req-1", "found")
    assert recorder.calls == [(API, "found")]
    assert recorder.clouds == {"test"}
    assert recorder.waits == []  # a free slot waits exactly nothing, and that is not reported
    assert upstream.timeouts == [3.0]  # the send is told the whole time left


async def test_the_vendors_label_names_the_outcome() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(ok({}))
    answer = await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(3.0))
    assert answer.outcome == "not found"
    assert recorder.calls == [(API, "not found")]


async def test_a_not_found_answer_is_observed_and_passed_on_without_retrying() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(status(404, **{"X-Request-Id": "req-9"}))
    with pytest.raises(AnsweredNotFound) as caught:
        await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(3.0))
    assert caught.value.request_id == "req-9"
    assert recorder.calls == [(API, "not found")]
    assert upstream.sent == 1


# -- the deadline -------------------------------------------------------------------------------------------------


async def test_a_passed_deadline_makes_no_call() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(ok())
    with pytest.raises(LookupFailed) as caught:
        await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(0.0))
    assert isinstance(caught.value.failure, TimedOut)
    assert caught.value.failure.detail == "the deadline passed before the call"
    assert upstream.sent == 0
    assert recorder.calls == []


async def test_a_send_that_outlives_the_deadline_is_timed_out() -> None:
    async def hang(remaining: float) -> httpx.Response:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    recorder = Recorder()
    # Real time here: the pipeline bounds the send with asyncio.timeout, which runs on the event loop's clock.
    calls = CallPipeline("test", rate=PLENTY, observer=recorder, retry=RetryPolicy(attempts=1))
    with pytest.raises(LookupFailed) as caught:
        await calls.call(Call(API, hang, Upstream.classify, IDENTITY), deadline=Deadline.after(0.05))
    assert isinstance(caught.value.failure, TimedOut)
    assert recorder.calls == [(API, "timed out")]


# -- the quota ----------------------------------------------------------------------------------------------------


async def test_a_wait_for_the_quota_is_observed_and_taken_from_the_time_left() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(ok())
    calls = pipeline(time, recorder, rate=Rate(1, 10.0))
    await calls.call(upstream.call(), deadline=time.deadline(30.0))
    await calls.call(upstream.call(), deadline=time.deadline(30.0))
    assert recorder.waits == [10.0]
    assert upstream.timeouts == [30.0, 20.0]


async def test_a_slot_beyond_the_deadline_less_the_call_budget_is_throttled_without_calling() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(ok())
    calls = pipeline(time, recorder, rate=Rate(1, 10.0), call_budget=0.5, attempts=1)  # no retry after the wait
    await calls.call(upstream.call(), deadline=time.deadline(30.0))
    with pytest.raises(LookupFailed) as caught:
        await calls.call(upstream.call(), deadline=time.deadline(10.4))  # 10 s to wait, 0.4 s left for the call
    failure = caught.value.failure
    assert isinstance(failure, Throttled)
    assert failure.retry_after == 10.0
    assert failure.detail == (
        "the client-side quota (1/10s per credential) has no free slot for 10.0s, longer than the deadline allows"
    )
    assert upstream.sent == 1
    await calls.call(upstream.call(), deadline=time.deadline(10.6))  # 0.6 s left after the wait: worth it
    assert upstream.sent == 2


async def test_the_quota_keeps_a_margin_by_default() -> None:
    assert default_quota_margin(Rate(5, 60.0)) == 3.0  # 5 % of a minute
    assert default_quota_margin(Rate(5, 1.0)) == 0.25  # at least a quarter of a second
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(ok())
    calls = pipeline(time, recorder, rate=Rate(1, 60.0), quota_margin=None)
    assert calls.limiter(API, "fp-1").rate == Rate(1, 63.0)
    await calls.call(upstream.call(), deadline=time.deadline(100.0))
    await calls.call(upstream.call(), deadline=time.deadline(100.0))
    assert recorder.waits == [63.0]


async def test_the_quota_belongs_to_the_credential() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(ok())
    calls = pipeline(time, recorder, rate=Rate(1, 10.0))
    await calls.call(upstream.call(Identity("fp-1")), deadline=time.deadline(30.0))
    await calls.call(upstream.call(Identity("fp-2")), deadline=time.deadline(30.0))
    assert recorder.waits == []


async def test_a_clouds_retry_after_holds_the_quota_and_is_waited_out() -> None:
    time, recorder = FakeTime(), Recorder()
    upstream = Upstream(status(429, **{"Retry-After": "4"}), ok())
    calls = pipeline(time, recorder)
    answer = await calls.call(upstream.call(), deadline=time.deadline(30.0))
    assert answer.outcome == "found"
    assert recorder.calls == [(API, "throttled"), (API, "found")]
    assert time.now == 1004.0  # the retry slept the cloud's 4 s, and the held slot was free by then
    time.now -= 4.0
    assert calls.limiter(API, "fp-1").next_slot() == 1004.0  # every call of this credential waits


# -- credential and transport errors ------------------------------------------------------------------------------


async def test_refused_credentials_are_unauthorized_and_not_retried() -> None:
    time, recorder = FakeTime(), Recorder()
    upstream = Upstream(CredentialsError(f"the service refused key {KEY_ID} with secret {SECRET}"))
    with pytest.raises(LookupFailed) as caught:
        await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(3.0))
    failure = caught.value.failure
    assert isinstance(failure, Unauthorized)
    assert failure.detail == f"no credentials: the service refused key {mask(KEY_ID)} with secret <hidden>"
    assert upstream.sent == 1
    assert recorder.calls == [(API, "unauthorized")]


async def test_an_unavailable_credential_service_is_unavailable_and_retried() -> None:
    time, recorder = FakeTime(), Recorder()
    upstream = Upstream(CredentialsUnavailable("STS did not answer"), ok())
    answer = await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(3.0))
    assert answer.outcome == "found"
    assert recorder.calls == [(API, "unavailable"), (API, "found")]


async def test_a_transport_failure_is_unavailable_retried_up_to_the_attempts() -> None:
    time, recorder = FakeTime(), Recorder()
    upstream = Upstream(httpx.ConnectError(f"connection refused for {SECRET}", request=REQUEST))
    with pytest.raises(LookupFailed) as caught:
        await pipeline(time, recorder, attempts=3).call(upstream.call(), deadline=time.deadline(3.0))
    failure = caught.value.failure
    assert isinstance(failure, Unavailable)
    assert "ConnectError" in failure.detail
    assert SECRET not in failure.detail
    assert upstream.sent == 3
    assert recorder.calls == [(API, "unavailable")] * 3


async def test_a_bad_answer_is_not_retried() -> None:
    time, recorder, upstream = FakeTime(), Recorder(), Upstream(status(400))
    with pytest.raises(LookupFailed) as caught:
        await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(3.0))
    assert isinstance(caught.value.failure, BadResponse)
    assert upstream.sent == 1


async def test_a_retry_that_would_outlive_the_deadline_is_not_made() -> None:
    time, recorder = FakeTime(), Recorder()
    upstream = Upstream(status(429, **{"Retry-After": "5"}), ok())
    with pytest.raises(LookupFailed) as caught:
        await pipeline(time, recorder).call(upstream.call(), deadline=time.deadline(3.0))
    assert isinstance(caught.value.failure, Throttled)
    assert upstream.sent == 1
    assert time.slept == []


# -- identities ---------------------------------------------------------------------------------------------------


def test_an_identity_scrubs_its_key_by_the_shared_mask_and_hides_the_rest() -> None:
    text = IDENTITY.scrub(f"key {KEY_ID}, secret {SECRET}, nothing else")
    assert text == f"key {mask(KEY_ID)}, secret <hidden>, nothing else"
    assert SECRET not in repr(IDENTITY)
    assert KEY_ID not in repr(IDENTITY)
    password_only = Identity("iam-1", secrets=("p4ssw0rd-long-enough",))
    assert password_only.scrub("bad password p4ssw0rd-long-enough") == "bad password <hidden>"  # not even 4 chars


async def test_credentials_are_fetched_within_the_deadline() -> None:
    async def refused() -> str:
        raise CredentialsError("no AK")

    async def slow() -> str:
        await asyncio.sleep(10)
        return "never"

    async def fine() -> str:
        return "credentials"

    assert await credentials_within(fine, cloud="test", api=API, deadline=Deadline.after(1.0)) == "credentials"
    with pytest.raises(LookupFailed) as caught:
        await credentials_within(refused, cloud="test", api=API, deadline=Deadline.after(1.0))
    assert caught.value.failure == Unauthorized(cloud="test", api=API, detail="no credentials: no AK")
    with pytest.raises(LookupFailed) as caught:
        await credentials_within(slow, cloud="test", api=API, deadline=Deadline.after(0.05))
    assert isinstance(caught.value.failure, TimedOut)
