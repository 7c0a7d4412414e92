"""OutcomeCache semantics on a fake clock: no test sleeps, upstreams are gated by events."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_gate.core.clock import Deadline
from image_gate.core.outcomes import Failure, Found, LookupFailed, NotFound, Outcome, TimedOut, Unavailable
from image_gate.facts.cache import Answer, OutcomeCache
from tests.faketime import FakeTime, settle


@dataclass
class Upstream:
    """A fake cloud API: answers ``outcome``; while ``gate`` is set, each call waits for it."""

    outcome: Outcome[str] = field(default_factory=lambda: Found("v1"))
    gate: asyncio.Event | None = None
    calls: list[Any] = field(default_factory=list)
    cancelled: int = 0
    deadlines: list[Deadline] = field(default_factory=list)

    def fetch_for(self, key: Any) -> Any:
        async def fetch(deadline: Deadline) -> Outcome[str]:
            self.calls.append(key)
            self.deadlines.append(deadline)
            try:
                if self.gate is not None:
                    await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return self.outcome

        return fetch

    async def fetch(self, deadline: Deadline) -> Outcome[str]:
        return await self.fetch_for("k")(deadline)


class Recorder:
    """A CacheObserver that counts."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.stale_ages: list[float] = []

    def hit(self, *, cache: str, negative: bool) -> None:
        self.counts["negative hit" if negative else "hit"] += 1

    def miss(self, *, cache: str, joined: bool) -> None:
        self.counts["joined" if joined else "miss"] += 1

    def stale(self, *, cache: str, reason: str, age: float) -> None:
        self.counts[f"stale {reason}"] += 1
        self.stale_ages.append(age)

    def timed_out(self, *, cache: str) -> None:
        self.counts["timed out"] += 1

    def refresh_ahead(self, *, cache: str) -> None:
        self.counts["refresh ahead"] += 1

    def evicted(self, *, cache: str) -> None:
        self.counts["evicted"] += 1


def make_cache(time: FakeTime, **overrides: Any) -> OutcomeCache[Any, str]:
    options: dict[str, Any] = {
        "cloud": "huawei",
        "api": "ListRegistryImages",
        "maxsize": 100,
        "ttl": 300.0,
        "negative_ttl": 30.0,
        "max_stale": 3600.0,
        "lookup_budget": 30.0,
        "clock": time,
        "sleep": time.sleep,
    }
    options.update(overrides)
    return OutcomeCache("test", **options)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def test_a_hundred_concurrent_misses_make_one_upstream_call(time: FakeTime, recorder: Recorder) -> None:
    cache = make_cache(time, observer=recorder)
    upstream = Upstream(gate=asyncio.Event())
    callers = [asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3))) for _ in range(100)]
    await settle()
    assert upstream.calls == ["k"]
    assert cache.in_flight == 1

    upstream.gate.set()  # type: ignore[union-attr]
    answers = await asyncio.gather(*callers)
    assert all(a == Answer(Found("v1")) for a in answers)
    assert upstream.calls == ["k"]
    assert recorder.counts == Counter({"miss": 1, "joined": 99})
    assert cache.in_flight == 0


async def test_a_found_is_fresh_for_its_ttl_then_fetched_once_more(time: FakeTime, recorder: Recorder) -> None:
    cache = make_cache(time, observer=recorder)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(299)
    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert answer.outcome == Found("v1")
    assert answer.age == pytest.approx(299)
    assert len(upstream.calls) == 1

    await time.advance(1)
    upstream.outcome = Found("v2")
    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert answer == Answer(Found("v2"))
    assert len(upstream.calls) == 2
    assert recorder.counts == Counter({"miss": 2, "hit": 1})


async def test_the_ttl_may_be_given_per_call(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream()
    await cache.get("pinned", upstream.fetch, deadline=time.deadline(3), ttl=86_400)
    await time.advance(3_600)
    await cache.get("pinned", upstream.fetch, deadline=time.deadline(3))
    assert len(upstream.calls) == 1


async def test_facts_without_ttl_never_expire(time: FakeTime) -> None:
    cache = make_cache(time, ttl=None)
    upstream = Upstream()
    await cache.get("sha256:aa", upstream.fetch, deadline=time.deadline(3))
    await time.advance(10 * 365 * 86_400)
    answer = await cache.get("sha256:aa", upstream.fetch, deadline=time.deadline(3))
    assert answer.outcome == Found("v1")
    assert len(upstream.calls) == 1


async def test_not_found_is_cached_for_the_shorter_negative_ttl(time: FakeTime, recorder: Recorder) -> None:
    cache = make_cache(time, observer=recorder)
    missing = Upstream(outcome=NotFound("not scanned yet"))
    present = Upstream()
    await cache.get("missing", missing.fetch, deadline=time.deadline(3))
    await cache.get("present", present.fetch, deadline=time.deadline(3))

    await time.advance(29)
    assert (await cache.get("missing", missing.fetch, deadline=time.deadline(3))).outcome == NotFound("not scanned yet")
    assert recorder.counts["negative hit"] == 1
    assert len(missing.calls) == 1

    await time.advance(2)  # 31 s: the negative entry expired, the positive one did not
    missing.outcome = Found("scanned")
    assert (await cache.get("missing", missing.fetch, deadline=time.deadline(3))).outcome == Found("scanned")
    assert (await cache.get("present", present.fetch, deadline=time.deadline(3))).outcome == Found("v1")
    assert (len(missing.calls), len(present.calls)) == (2, 1)


async def test_failures_are_never_cached(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream(outcome=Unavailable(cloud="huawei", api="ListRegistryImages", detail="503"))
    first = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    second = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert isinstance(first.outcome, Unavailable)
    assert isinstance(second.outcome, Unavailable)
    assert not first.stale
    assert len(upstream.calls) == 2
    assert len(cache) == 0


async def test_a_lookup_failed_exception_is_an_outcome(time: FakeTime) -> None:
    cache = make_cache(time)
    failure = Unavailable(cloud="huawei", api="ListRegistryImages", detail="reset")

    async def fetch(deadline: Deadline) -> Outcome[str]:
        raise LookupFailed(failure)

    assert (await cache.get("k", fetch, deadline=time.deadline(3))).outcome == failure


async def test_a_buggy_fetch_becomes_a_failure_not_a_crash(time: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    cache = make_cache(time)

    async def fetch(deadline: Deadline) -> Outcome[str]:
        raise KeyError("data_list")

    with caplog.at_level(logging.ERROR):
        answer = await cache.get("k", fetch, deadline=time.deadline(3))
    assert type(answer.outcome) is Failure
    assert "internal error: KeyError" in answer.outcome.detail
    assert "raised instead of returning an outcome" in caplog.text


async def test_stale_if_error_within_max_stale(time: FakeTime, recorder: Recorder) -> None:
    cache = make_cache(time, observer=recorder, max_stale=3600)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(1_000)
    outage = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    upstream.outcome = outage

    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert answer == Answer(Found("v1"), stale=True, age=1_000, error=outage)
    assert recorder.counts["stale failure"] == 1
    assert recorder.stale_ages == [1_000]
    assert len(upstream.calls) == 2

    # The stale entry is not made fresh: the next request asks again.
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert len(upstream.calls) == 3


@pytest.mark.parametrize(
    ("options", "first", "expired_after"),
    [
        pytest.param({"max_stale": 3600}, Found("v1"), 3_600, id="beyond max_stale"),
        pytest.param({}, NotFound("no such image"), 31, id="a stale not-found is never answered"),
    ],
)
async def test_the_failure_is_the_answer_when_no_stale_answer_may_stand_in(
    time: FakeTime, options: dict[str, Any], first: Outcome[str], expired_after: float
) -> None:
    cache = make_cache(time, **options)
    upstream = Upstream(outcome=first)
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(expired_after)
    outage = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    upstream.outcome = outage
    assert await cache.get("k", upstream.fetch, deadline=time.deadline(3)) == Answer(outage)


async def test_a_not_found_replaces_a_found(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(301)
    upstream.outcome = NotFound("tag deleted")
    assert (await cache.get("k", upstream.fetch, deadline=time.deadline(3))).outcome == NotFound("tag deleted")
    upstream.outcome = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    await time.advance(31)
    # The deleted tag's old fact is gone: a failure now is a failure.
    assert isinstance((await cache.get("k", upstream.fetch, deadline=time.deadline(3))).outcome, Unavailable)


async def test_deadline_passes_caller_times_out_and_the_lookup_fills_the_cache(
    time: FakeTime, recorder: Recorder
) -> None:
    cache = make_cache(time, observer=recorder)
    upstream = Upstream(gate=asyncio.Event())
    caller = asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3)))
    await time.advance(2.9)
    assert not caller.done()

    await time.advance(0.1)
    assert caller.done()  # promptly: at the deadline, with the upstream still silent
    answer = caller.result()
    assert isinstance(answer.outcome, TimedOut)
    assert "goes on" in answer.outcome.detail
    assert recorder.counts["timed out"] == 1
    assert cache.in_flight == 1
    assert upstream.cancelled == 0

    upstream.gate.set()  # type: ignore[union-attr]
    await settle()
    assert cache.in_flight == 0
    retry = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert retry.outcome == Found("v1")
    assert len(upstream.calls) == 1
    assert recorder.counts["hit"] == 1


async def test_an_expired_deadline_still_starts_the_lookup(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream()
    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(0))
    assert isinstance(answer.outcome, TimedOut)
    await settle()
    assert (await cache.get("k", upstream.fetch, deadline=time.deadline(0))).outcome == Found("v1")
    assert len(upstream.calls) == 1


async def test_deadline_passes_with_a_stale_found_at_hand(time: FakeTime, recorder: Recorder) -> None:
    cache = make_cache(time, observer=recorder)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(400)
    upstream.gate = asyncio.Event()
    upstream.outcome = Found("v2")
    caller = asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3)))
    await time.advance(3)
    answer = caller.result()
    assert answer.outcome == Found("v1")
    assert answer.stale
    assert isinstance(answer.error, TimedOut)
    assert recorder.counts["stale deadline"] == 1

    upstream.gate.set()
    await settle()
    assert await cache.get("k", upstream.fetch, deadline=time.deadline(3)) == Answer(Found("v2"))


async def test_the_lookup_gives_the_fetch_its_own_budget_not_the_callers_deadline(time: FakeTime) -> None:
    cache = make_cache(time, lookup_budget=30)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert upstream.deadlines[0].remaining() == pytest.approx(30)


async def test_a_lookup_that_outlives_its_budget_ends_and_is_not_cached(time: FakeTime) -> None:
    cache = make_cache(time, lookup_budget=30)
    upstream = Upstream(gate=asyncio.Event())  # never set: the cloud never answers
    caller = asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3)))
    await settle()
    await time.advance(3)
    assert isinstance(caller.result().outcome, TimedOut)
    await time.advance(26.9)
    assert cache.in_flight == 1
    await time.advance(0.1)
    assert cache.in_flight == 0
    assert upstream.cancelled == 1
    assert len(cache) == 0


async def test_a_cancelled_caller_does_not_cancel_the_others(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream(gate=asyncio.Event())
    leaving = asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3)))
    staying = asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3)))
    await settle()
    leaving.cancel()
    await settle()
    assert leaving.cancelled()
    assert upstream.cancelled == 0
    assert cache.in_flight == 1

    upstream.gate.set()  # type: ignore[union-attr]
    assert (await staying).outcome == Found("v1")
    assert len(upstream.calls) == 1


async def test_the_last_caller_leaving_leaves_the_lookup_running(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream(gate=asyncio.Event())
    only = asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3)))
    await settle()
    only.cancel()
    await settle()
    upstream.gate.set()  # type: ignore[union-attr]
    await settle()
    assert (await cache.get("k", upstream.fetch, deadline=time.deadline(3))).outcome == Found("v1")
    assert len(upstream.calls) == 1


async def test_the_entry_bound_evicts_the_least_recently_used(time: FakeTime, recorder: Recorder) -> None:
    cache = make_cache(time, maxsize=3, ttl=None, observer=recorder)
    upstream = Upstream()
    for key in ("a", "b", "c"):
        await cache.get(key, upstream.fetch_for(key), deadline=time.deadline(3))
    await cache.get("a", upstream.fetch_for("a"), deadline=time.deadline(3))  # "b" is now the oldest
    await cache.get("d", upstream.fetch_for("d"), deadline=time.deadline(3))
    assert len(cache) == 3
    assert recorder.counts["evicted"] == 1

    for key in ("a", "c", "d"):
        await cache.get(key, upstream.fetch_for(key), deadline=time.deadline(3))
    assert upstream.calls == ["a", "b", "c", "d"]
    await cache.get("b", upstream.fetch_for("b"), deadline=time.deadline(3))
    assert upstream.calls == ["a", "b", "c", "d", "b"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=9), max_size=60), st.integers(min_value=1, max_value=5))
def test_any_sequence_stays_within_the_bound_and_calls_only_on_misses(keys: list[int], maxsize: int) -> None:
    async def run() -> None:
        time = FakeTime()
        cache = make_cache(time, maxsize=maxsize, ttl=None)
        upstream = Upstream()
        model: list[int] = []  # keys in LRU order, oldest first
        expected_calls = 0
        for key in keys:
            if key in model:
                model.remove(key)
            else:
                expected_calls += 1
                if len(model) == maxsize:
                    model.pop(0)
            model.append(key)
            answer = await cache.get(key, upstream.fetch_for(key), deadline=time.deadline(3))
            assert answer.outcome == Found("v1")
            assert len(cache) <= maxsize
        assert len(upstream.calls) == expected_calls

    asyncio.run(run())


async def test_refresh_ahead_answers_at_once_and_refreshes_in_the_background(
    time: FakeTime, recorder: Recorder
) -> None:
    cache = make_cache(time, observer=recorder, refresh_ahead=0.8)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(239)
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert len(upstream.calls) == 1  # before 80% of the TTL: a plain hit

    await time.advance(1)
    upstream.gate = asyncio.Event()
    upstream.outcome = Found("v2")
    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert answer.outcome == Found("v1")  # no waiting for the refresh
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await settle()
    assert len(upstream.calls) == 2  # one refresh, however many hits
    assert recorder.counts["refresh ahead"] == 1

    upstream.gate.set()
    await settle()
    await time.advance(100)  # past the first fetch's TTL, well within the refreshed one
    assert await cache.get("k", upstream.fetch, deadline=time.deadline(3)) == Answer(Found("v2"), age=100)
    assert len(upstream.calls) == 2


async def test_a_failed_refresh_ahead_keeps_the_fresh_entry(time: FakeTime) -> None:
    cache = make_cache(time, refresh_ahead=0.8)
    upstream = Upstream()
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await time.advance(250)
    upstream.outcome = Unavailable(cloud="huawei", api="ListRegistryImages", detail="503")
    await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    await settle()
    answer = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert answer.outcome == Found("v1")
    assert not answer.stale


async def test_refresh_ahead_is_bounded(time: FakeTime) -> None:
    cache = make_cache(time, refresh_ahead=0.5, max_refreshes=2)
    upstream = Upstream()
    for key in range(5):
        await cache.get(key, upstream.fetch_for(key), deadline=time.deadline(3))
    await time.advance(200)
    upstream.gate = asyncio.Event()
    for key in range(5):
        await cache.get(key, upstream.fetch_for(key), deadline=time.deadline(3))
    await settle()
    assert len(upstream.calls) == 5 + 2
    assert cache.in_flight == 2
    upstream.gate.set()
    await settle()


async def test_warm_starts_a_lookup_without_waiting_unless_fresh(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream(gate=asyncio.Event())
    cache.warm("k", upstream.fetch)
    cache.warm("k", upstream.fetch)
    await settle()
    assert upstream.calls == ["k"]
    upstream.gate.set()  # type: ignore[union-attr]
    await settle()
    cache.warm("k", upstream.fetch)
    await settle()
    assert upstream.calls == ["k"]
    assert (await cache.get("k", upstream.fetch, deadline=time.deadline(0))).outcome == Found("v1")


async def test_aclose_cancels_lookups_in_flight_and_refuses_new_ones(time: FakeTime) -> None:
    cache = make_cache(time)
    upstream = Upstream(gate=asyncio.Event())
    caller = asyncio.create_task(cache.get("k", upstream.fetch, deadline=time.deadline(3)))
    await settle()
    await cache.aclose()
    assert cache.in_flight == 0
    assert upstream.cancelled == 1
    answer = await caller
    assert isinstance(answer.outcome, Unavailable)
    assert "shutting down" in answer.outcome.detail
    later = await cache.get("k", upstream.fetch, deadline=time.deadline(3))
    assert isinstance(later.outcome, Unavailable)
    assert len(upstream.calls) == 1
    # Nothing of ours is left pending on the loop.
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and "image-gate" in t.get_name()] == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("maxsize", 0), ("ttl", -1.0), ("negative_ttl", -1.0), ("lookup_budget", 0.0), ("refresh_ahead", 1.0)],
)
def test_nonsense_settings_are_refused(time: FakeTime, option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        make_cache(time, **{option: value})
