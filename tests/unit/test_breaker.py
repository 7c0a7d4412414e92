"""CircuitBreaker: opens after N consecutive failures, fails fast, half-opens with one probe, closes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from image_gate.core import outcomes
from image_gate.facts.breaker import BreakerSettings, BreakerState, CircuitBreaker

API = "ListRegistryImages"
DOWN = outcomes.Unavailable(cloud="huawei", api=API, detail="503 Service Unavailable")
SLOW = outcomes.TimedOut(cloud="huawei", api=API, detail="read timeout")
BUSY = outcomes.Throttled(cloud="huawei", api=API, detail="429", retry_after=10)
DENIED = outcomes.Unauthorized(cloud="huawei", api=API, detail="APIGW.0301")
UP = outcomes.Found("image")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Service:
    """Counts calls and answers what it is told."""

    def __init__(self) -> None:
        self.calls = 0

    def answering(self, outcome: outcomes.Outcome[str]) -> Callable[[], Awaitable[outcomes.Outcome[str]]]:
        async def attempt() -> outcomes.Outcome[str]:
            self.calls += 1
            return outcome

        return attempt


class States:
    def __init__(self) -> None:
        self.changes: list[BreakerState] = []
        self.rejected = 0

    def breaker_state(self, *, cloud: str, state: BreakerState) -> None:
        self.changes.append(state)

    def breaker_rejected(self, *, cloud: str, api: str) -> None:
        self.rejected += 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def states() -> States:
    return States()


@pytest.fixture
def breaker(clock: Clock, states: States) -> CircuitBreaker:
    return CircuitBreaker("huawei", BreakerSettings(failure_threshold=3, cool_down=30), clock=clock, observer=states)


async def trip(breaker: CircuitBreaker) -> Service:
    """Open the circuit with as many failures in a row as it takes; the service that failed them."""
    service = Service()
    for _ in range(breaker.settings.failure_threshold):
        await breaker.call(API, service.answering(DOWN))
    assert breaker.state is BreakerState.OPEN
    return service


async def test_opens_after_n_consecutive_unavailable_or_timed_out(breaker: CircuitBreaker) -> None:
    service = Service()
    assert await breaker.call(API, service.answering(DOWN)) == DOWN
    assert await breaker.call(API, service.answering(SLOW)) == SLOW
    assert breaker.state is BreakerState.CLOSED
    assert await breaker.call(API, service.answering(DOWN)) == DOWN
    assert breaker.state is BreakerState.OPEN
    assert service.calls == 3


async def test_an_answer_resets_the_count(breaker: CircuitBreaker) -> None:
    service = Service()
    for outcome in (DOWN, DOWN, outcomes.NotFound("no such image"), DOWN, DOWN):
        await breaker.call(API, service.answering(outcome))
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("answer", [DENIED, outcomes.BadResponse(cloud="huawei", api=API, detail="not JSON")])
async def test_failures_that_prove_the_service_answered_do_not_trip(
    breaker: CircuitBreaker, answer: outcomes.Outcome[str]
) -> None:
    service = Service()
    for _ in range(10):
        await breaker.call(API, service.answering(answer))
    assert breaker.state is BreakerState.CLOSED
    await breaker.call(API, service.answering(DOWN))
    await breaker.call(API, service.answering(answer))  # ... and reset the count
    await breaker.call(API, service.answering(DOWN))
    await breaker.call(API, service.answering(DOWN))
    assert breaker.state is BreakerState.CLOSED


async def test_throttling_neither_trips_nor_resets(breaker: CircuitBreaker) -> None:
    service = Service()
    for _ in range(10):
        await breaker.call(API, service.answering(BUSY))
    assert breaker.state is BreakerState.CLOSED
    for outcome in (DOWN, BUSY, DOWN, BUSY, DOWN):
        await breaker.call(API, service.answering(outcome))
    assert breaker.state is BreakerState.OPEN


async def test_an_open_circuit_fails_fast_without_calling(
    breaker: CircuitBreaker, clock: Clock, states: States
) -> None:
    service = await trip(breaker)
    clock.now += 10
    outcome = await breaker.call("ListImageBasicImage", service.answering(UP))
    assert isinstance(outcome, outcomes.Unavailable)
    assert outcome.cloud == "huawei"
    assert outcome.api == "ListImageBasicImage"
    assert outcome.detail.startswith("circuit open after 3 consecutive failures, retrying in 20s")
    assert "503 Service Unavailable" in outcome.detail  # the cause, for whoever reads the deny message
    assert service.calls == 3
    assert states.rejected == 1


async def test_half_open_lets_one_probe_through_and_closes_on_success(
    breaker: CircuitBreaker, clock: Clock, states: States
) -> None:
    service = await trip(breaker)
    clock.now += 30
    assert breaker.state is BreakerState.HALF_OPEN

    gate = asyncio.Event()

    async def slow_probe() -> outcomes.Outcome[str]:
        service.calls += 1
        await gate.wait()
        return UP

    probe = asyncio.create_task(breaker.call(API, slow_probe))
    await asyncio.sleep(0)
    meanwhile = await breaker.call(API, service.answering(UP))
    assert isinstance(meanwhile, outcomes.Unavailable)
    assert "a probe is in flight" in meanwhile.detail
    assert service.calls == 4

    gate.set()
    assert await probe == UP
    assert breaker.state is BreakerState.CLOSED
    assert await breaker.call(API, service.answering(UP)) == UP
    assert states.changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_a_failed_probe_opens_the_circuit_for_another_cool_down(breaker: CircuitBreaker, clock: Clock) -> None:
    service = await trip(breaker)
    clock.now += 30
    assert await breaker.call(API, service.answering(SLOW)) == SLOW
    assert breaker.state is BreakerState.OPEN
    clock.now += 29
    assert isinstance(await breaker.call(API, service.answering(UP)), outcomes.Unavailable)
    clock.now += 1
    assert await breaker.call(API, service.answering(UP)) == UP
    assert breaker.state is BreakerState.CLOSED
    assert service.calls == 5


async def test_a_throttled_probe_lets_the_next_call_probe(breaker: CircuitBreaker, clock: Clock) -> None:
    service = await trip(breaker)
    clock.now += 30
    assert await breaker.call(API, service.answering(BUSY)) == BUSY
    assert breaker.state is BreakerState.HALF_OPEN
    assert await breaker.call(API, service.answering(UP)) == UP
    assert breaker.state is BreakerState.CLOSED


async def test_a_cancelled_probe_releases_the_probe_slot(breaker: CircuitBreaker, clock: Clock) -> None:
    service = await trip(breaker)
    clock.now += 30

    async def hanging() -> outcomes.Outcome[str]:
        await asyncio.Event().wait()
        return UP

    probe = asyncio.create_task(breaker.call(API, hanging))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await breaker.call(API, service.answering(UP)) == UP
    assert breaker.state is BreakerState.CLOSED


async def test_a_raising_attempt_is_not_counted(breaker: CircuitBreaker) -> None:
    async def broken() -> outcomes.Outcome[str]:
        raise RuntimeError("bug")

    for _ in range(5):
        with pytest.raises(RuntimeError):
            await breaker.call(API, broken)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(("threshold", "cool_down"), [(0, 30.0), (3, 0.0)])
def test_nonsense_settings_are_refused(threshold: int, cool_down: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        BreakerSettings(failure_threshold=threshold, cool_down=cool_down)
