"""Past capacity, image-gate refuses at once what it cannot answer in time, and answers the rest in time.

The server (`tests.integration.overload_server`) is image-gate's real review path in a process of
its own; the flood comes from raw HTTP/1.1 on already open connections, all sent at once, so that
the client costs next to nothing and the arrival is far beyond what one core judges within the
reviews' timeout. Without shedding, the last of them would be answered seconds late.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.overload_server import COLD_SECONDS
from tests.reviews import review

FLOOD = 1_500
FLOOD_TIMEOUT = 2.0
"""The ``?timeout=`` of the flood's reviews, as the API server sends its ``timeoutSeconds``."""
CONTAINERS = 40
"""Each review's pod: enough containers that one review costs a few milliseconds of CPU."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    seconds: float


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.overload_server"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()


def pod_review(tag: str, name: str) -> bytes:
    containers = [{"name": f"c{n}", "image": f"mirror.example.com/team/app:{tag}"} for n in range(CONTAINERS)]
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": containers},
    }
    return json.dumps(review(pod)).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection, as the API server holds them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, body: bytes, *, timeout: float) -> Answer:  # noqa: ASYNC109 -- the URL's, for the server
        started = time.monotonic()
        self.writer.write(
            f"POST /pods?timeout={timeout:g}s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answer = await self.reader.readexactly(length)
        return Answer(int(status_line.split()[1]), answer, time.monotonic() - started)

    def close(self) -> None:
        self.writer.close()


async def connections(port: int, count: int) -> list[Connection]:
    opened: list[Connection] = []
    for start in range(0, count, 100):  # in batches: the listen backlog is finite
        opened += await asyncio.gather(*(Connection.open(port) for _ in range(start, min(count, start + 100))))
    return opened


async def warm(port: int) -> None:
    """The flood's image cached (its first review waits for the slow HSS), then a few reviews one at a
    time, as a cluster sends them before a rollout floods it: image-gate measures what one takes."""
    connection = await Connection.open(port)
    try:
        for _ in range(20):
            answer = await connection.post(pod_review("v1", "warm"), timeout=30)
            assert answer.status == 200, answer
            assert json.loads(answer.body)["response"]["allowed"] is True
    finally:
        connection.close()


async def test_a_flood_past_capacity_is_refused_fast_and_nothing_is_answered_late(server_port: int) -> None:
    await warm(server_port)
    pool = await connections(server_port, FLOOD)
    cold_connection = await Connection.open(server_port)
    try:
        body = pod_review("v1", "flood")
        # A cold review goes first: it waits for HSS while the flood arrives, and is never refused.
        cold = asyncio.ensure_future(cold_connection.post(pod_review("cold", "cold"), timeout=5))
        await asyncio.sleep(0.05)
        answers = await asyncio.gather(*(connection.post(body, timeout=FLOOD_TIMEOUT) for connection in pool))
        cold_answer = await cold
    finally:
        for connection in [*pool, cold_connection]:
            connection.close()

    admitted = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert len(admitted) + len(refused) == FLOOD, {a.status for a in answers}
    assert refused, "the flood was not past capacity: nothing refused"
    assert admitted, "everything refused"
    assert all(b"over capacity" in a.body for a in refused)
    # Nothing answered later than the review's timeout, refusals included: one waits at most for the
    # reviews admitted before it (their CPU is what the shedder bounds), never for the whole flood.
    assert max(a.seconds for a in admitted) < FLOOD_TIMEOUT, sorted(a.seconds for a in admitted)[-5:]
    assert max(a.seconds for a in refused) < FLOOD_TIMEOUT, sorted(a.seconds for a in refused)[-5:]
    # The cold review was in flight: answered, allowed, from its lookup, in time.
    assert cold_answer.status == 200, cold_answer
    assert json.loads(cold_answer.body)["response"]["allowed"] is True
    assert COLD_SECONDS <= cold_answer.seconds < 5


async def test_below_capacity_nothing_is_refused(server_port: int) -> None:
    await warm(server_port)
    pool = await connections(server_port, 4)
    try:
        body = pod_review("v1", "calm")
        for _ in range(50):
            answers = await asyncio.gather(*(connection.post(body, timeout=FLOOD_TIMEOUT) for connection in pool))
            assert {a.status for a in answers} == {200}
    finally:
        for connection in pool:
            connection.close()
