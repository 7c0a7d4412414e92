"""The Lease loop on a fake clock: who leads, when leadership moves, and the quota hand-over."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from image_gate.facts.calllog import CallLog, Handover, UnreadableCallLog, decode_calls, encode_calls
from image_gate.kube.kubeapi import ApiError
from image_gate.kube.lease import CALLS_ANNOTATION, LeaderElector, LeaseSettings, from_micro_time, micro_time
from tests.faketime import FakeTime

WINDOW = 60.0


class LeaseServer:
    """One Lease with the API server's optimistic concurrency: a write must name the current resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False
        self.writes = 0

    def _check(self) -> None:
        if self.down:
            raise ApiError(0, "Unreachable", "connection refused")

    async def get(self) -> dict[str, Any] | None:
        self._check()
        return copy.deepcopy(self.lease)

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        if self.lease is not None:
            raise ApiError(409, "AlreadyExists", "exists")
        return self._store(body)

    async def replace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._store(body)

    def _store(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.writes += 1
        self.lease = copy.deepcopy(dict(body))
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    @property
    def spec(self) -> dict[str, Any]:
        assert self.lease is not None
        return dict(self.lease["spec"])


class Replica:
    def __init__(self, name: str, server: LeaseServer, time: FakeTime) -> None:
        self.calls = CallLog(wall=time)
        self.changes: list[tuple[bool, Handover | None]] = []
        self.elector = LeaderElector(
            server,
            LeaseSettings(namespace="image-gate", identity=name, quota_window=WINDOW),
            calls=self.calls,
            on_change=lambda leading, handover: self.changes.append((leading, handover)),
            clock=time,
            wall=time,
            sleep=time.sleep,
        )


@pytest.fixture
def server() -> LeaseServer:
    return LeaseServer()


async def test_the_first_replica_creates_the_lease_and_leads(time: FakeTime, server: LeaseServer) -> None:
    a, b = Replica("a", server, time), Replica("b", server, time)
    assert await a.elector.step()
    assert not await b.elector.step()
    assert a.elector.leading
    assert not b.elector.leading
    assert b.elector.holder == "a"
    assert server.spec["holderIdentity"] == "a"
    assert server.spec["leaseDurationSeconds"] == 15
    assert server.spec["leaseTransitions"] == 0
    assert a.changes == [(True, Handover())]


async def test_the_holder_renews_and_nobody_else_takes_over(time: FakeTime, server: LeaseServer) -> None:
    a, b = Replica("a", server, time), Replica("b", server, time)
    await a.elector.step()
    acquired = server.spec["acquireTime"]
    for _ in range(20):
        await time.advance(2.0)
        assert await a.elector.step()
        assert not await b.elector.step()
    assert server.spec["acquireTime"] == acquired
    assert from_micro_time(server.spec["renewTime"]) == pytest.approx(time.now)
    assert b.changes == []


async def test_a_dead_leader_is_replaced_after_the_lease_duration_by_the_others_clock(
    time: FakeTime, server: LeaseServer
) -> None:
    a, b = Replica("a", server, time), Replica("b", server, time)
    await a.elector.step()
    a.calls.record("huawei/ListRegistryImages", time.now - 1.0)
    await time.advance(2.0)
    await a.elector.step()  # the call log goes out with the renewal
    died_renewing = time.now
    # a dies. b keeps looking: the Lease stays the same, so it expires 15 s after b first saw it so.
    await b.elector.step()
    seen = time.now
    while not await b.elector.step():
        await time.advance(1.0)
    assert time.now - seen >= 15.0
    assert time.now - died_renewing <= 15.0 + 2.0, "taken over within the Lease duration (and a retry period)"
    assert server.spec["holderIdentity"] == "b"
    assert server.spec["leaseTransitions"] == 1
    ((leading, handover),) = b.changes
    assert leading
    assert handover is not None
    assert handover.last_calls == {"huawei/ListRegistryImages": pytest.approx(died_renewing - 3.0)}
    # a did not release: it may have called, unrecorded, until its own renew deadline.
    assert handover.unrecorded_until == pytest.approx(died_renewing + 10.0)
    assert handover.hold_until("huawei", window=WINDOW) == pytest.approx(died_renewing + 10.0 + WINDOW)


@pytest.mark.parametrize(("phase", "dies_after"), [(0.05, 0.01), (1.0, 1.0), (1.95, 1.99), (1.95, 0.01), (0.05, 1.99)])
async def test_a_standby_takes_over_within_the_lease_duration_of_the_leaders_death(
    time: FakeTime, server: LeaseServer, phase: float, dies_after: float
) -> None:
    """The standby runs its own loop; ``phase`` is how long after each renewal it reads the Lease, and
    ``dies_after`` how long after its last renewal the leader dies (it never renews again, never releases)."""
    import asyncio

    a, b = Replica("a", server, time), Replica("b", server, time)
    await a.elector.step()
    await time.advance(phase)
    standby = asyncio.ensure_future(b.elector.run())
    for _ in range(10):
        await time.advance(2.0)
        assert await a.elector.step()
    last_renewal = time.now
    await time.advance(dies_after)
    died = time.now
    await time.advance(20.0)
    assert b.changes, "b leads"
    took_over = from_micro_time(server.spec["acquireTime"])
    assert took_over is not None
    assert took_over - died <= 15.0, "within the Lease duration of the leader's death"
    assert took_over - last_renewal <= 15.0
    assert took_over - last_renewal > 10.0 + 2.0, "and well after the dead leader stopped leading by its own clock"
    assert a.elector._renewed_at is not None
    assert a.elector._renewed_at + 10.0 < took_over, "a stopped leading (its renew deadline) before b took over"
    assert server.spec["holderIdentity"] == "b"
    standby.cancel()
    await time.advance(0.1)


async def test_a_released_lease_is_taken_at_once_and_hands_over_exactly(time: FakeTime, server: LeaseServer) -> None:
    a, b = Replica("a", server, time), Replica("b", server, time)
    await a.elector.step()
    a.calls.record("huawei/ListImageBasicImage", time.now)
    called = time.now
    await time.advance(5.0)
    await a.elector.release()
    assert a.changes[-1] == (False, None)
    assert server.spec["holderIdentity"] == ""
    assert await b.elector.step(), "a released Lease needs no waiting"
    ((_, handover),) = b.changes
    assert handover is not None
    assert handover.unrecorded_until is None
    assert handover.hold_until("huawei", window=WINDOW) == pytest.approx(called + WINDOW)
    assert handover.hold_until("aliyun", window=WINDOW) == float("-inf")
    # b's own log now carries a's call, so a third leader would wait for it too.
    assert decode_calls(server.lease["metadata"]["annotations"][CALLS_ANNOTATION]) == {  # type: ignore[index]
        "huawei/ListImageBasicImage": pytest.approx(called, abs=0.001)
    }


async def test_a_leader_that_cannot_renew_stops_leading_before_anyone_may_take_over(
    time: FakeTime, server: LeaseServer
) -> None:
    a = Replica("a", server, time)
    await a.elector.step()
    server.down = True
    await time.advance(9.0)
    assert not await a.elector.step()
    assert a.elector.leading, "still within the renew deadline"
    await time.advance(1.0)
    assert not a.elector.leading, "by its own clock, at the renew deadline (10 s), before the Lease expires (15 s)"
    await a.elector.step()
    assert a.changes == [(True, Handover()), (False, None)]


async def test_of_two_replicas_taking_an_expired_lease_one_wins(time: FakeTime, server: LeaseServer) -> None:
    a, c = Replica("a", server, time), Replica("c", server, time)

    class ReadThenLose:
        """b's view of the API server: c takes the Lease between b's read and b's write."""

        armed = False

        async def get(self) -> dict[str, Any] | None:
            lease = await server.get()
            if self.armed:
                assert await c.elector.step()
            return lease

        create = server.create
        replace = server.replace

    view = ReadThenLose()
    b = LeaderElector(
        view,
        LeaseSettings(namespace="image-gate", identity="b"),
        calls=CallLog(wall=time),
        clock=time,
        wall=time,
        sleep=time.sleep,
    )
    await a.elector.step()
    await c.elector.step()
    await b.step()
    await time.advance(16.0)
    view.armed = True
    assert not await b.step(), "b's replace names the resourceVersion it read, which c's write made stale"
    assert server.spec["holderIdentity"] == "c"
    assert server.spec["leaseTransitions"] == 1
    assert not b.leading


async def test_the_call_log_is_written_soon_after_a_call(time: FakeTime, server: LeaseServer) -> None:
    import asyncio

    a = Replica("a", server, time)
    runner = asyncio.ensure_future(a.elector.run())
    await time.advance(0.1)
    writes = server.writes
    a.calls.upstream_call(cloud="huawei", api="ListRegistryImages", outcome="found", seconds=0.2)
    await time.advance(0.5)
    assert server.writes == writes + 1, "written after the flush delay, not at the next renewal"
    assert "huawei/ListRegistryImages" in server.lease["metadata"]["annotations"][CALLS_ANNOTATION]  # type: ignore[index]
    runner.cancel()
    await time.advance(0.1)
    assert server.spec["holderIdentity"] == "", "released at shutdown"


def test_the_call_log_keeps_the_latest_call_within_the_window(time: FakeTime) -> None:
    log = CallLog(wall=time)
    log.record("huawei/A", time.now - 100)
    log.record("huawei/B", time.now - 10)
    log.record("huawei/B", time.now - 20)
    assert log.snapshot(within=60) == {"huawei/B": time.now - 10}
    assert decode_calls(encode_calls({"huawei/B": 1.23456})) == {"huawei/B": 1.235}
    for bad in ("[", "[1]", '{"a": "x"}', '{"a": true}'):
        with pytest.raises(UnreadableCallLog):
            decode_calls(bad)


def test_lease_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaseSettings(namespace="x", identity="a", renew_deadline=20)
    with pytest.raises(ValueError, match="retry_period \\+ renew_deadline"):
        LeaseSettings(namespace="x", identity="a", lease_duration=15, renew_deadline=13, retry_period=3)
    assert micro_time(0.5) == "1970-01-01T00:00:00.500000Z"


async def test_an_unreachable_api_server_is_reported_once_not_every_retry(
    time: FakeTime, server: LeaseServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    a = Replica("a", server, time)
    server.down = True
    with caplog.at_level(logging.INFO, logger="image_gate.kube.lease"):
        for _ in range(5):
            await a.elector.step()
            await time.advance(2.0)
        server.down = False
        await a.elector.step()
    messages = [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO]
    assert sum("could not be read or written" in message for message in messages) == 1
    assert any("can be read and written again" in message for message in messages)


@pytest.mark.parametrize("text", ["[" * 100_000, "not json", '["a list"]', '{"ListRegistryImages": "noon"}'])
def test_an_unreadable_call_log_is_refused_with_its_own_error(text: str) -> None:
    """A Lease annotation nested past the recursion limit is as unreadable as any other garbage, not a crash."""
    with pytest.raises(UnreadableCallLog):
        decode_calls(text)
