"""A rolling restart under load drops no review: SIGTERM makes a replica unready, it drains, exits 0.

Two real ``image-gate run`` processes (same serving certificate, as two pods of one Deployment)
sit behind a small TCP load balancer written here: it polls each one's ``/readyz`` and sends
each new connection to the next ready backend, round robin -- what a Service's endpoints and
kube-proxy do, with the endpoints following readiness. Clients keep their connections alive, as
the API server does. While reviews flow steadily, one replica gets SIGTERM, exits, and is
started again; not one review may fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from harness import ControlPlane

from cloudsim.catalogue import Catalogue
from tests.e2e.factstore import all_running
from tests.e2e.imagegate import (
    IMAGE_GATE_NAMESPACE,
    UBUNTU_IMAGE,
    CloudSim,
    ImageGate,
    Kube,
    admission_review,
    new_image_gate,
    pod_manifest,
)

pytestmark = pytest.mark.e2e

DRAIN_SECONDS = 2.0
READINESS_POLL = 0.1


@dataclass
class Backend:
    gate: ImageGate
    ready: bool = False


@dataclass
class LoadBalancer:
    """Round robin over the ready backends, per connection; readiness from ``/readyz``."""

    backends: list[Backend]
    ca_file: Path
    port: int = 0
    connections: dict[int, int] = field(default_factory=dict)
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _turn: Iterator[int] = field(default_factory=itertools.count)

    async def poll_readiness(self) -> None:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(self.ca_file)), timeout=1) as http:
            while True:
                for backend in self.backends:
                    try:
                        answer = await http.get(f"https://127.0.0.1:{backend.gate.health_port}/readyz")
                        backend.ready = answer.status_code == 200
                    except httpx.HTTPError:
                        backend.ready = False
                if all(backend.ready for backend in self.backends):
                    self.all_ready.set()
                else:
                    self.all_ready.clear()
                await asyncio.sleep(READINESS_POLL)

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        ready = [backend for backend in self.backends if backend.ready]
        if not ready:
            client_writer.close()
            return
        backend = ready[next(self._turn) % len(ready)]
        self.connections[backend.gate.port] = self.connections.get(backend.gate.port, 0) + 1
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", backend.gate.port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoadBalancer]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        poller = asyncio.create_task(self.poll_readiness())
        try:
            async with server:
                yield self
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then close: a backend closing its side closes the client's too."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
def replicas(
    control_plane: ControlPlane,
    kube: Kube,
    crd: object,
    cloudsim: CloudSim,
    catalogue: Catalogue,
    tmp_path: Path,
) -> Iterator[list[ImageGate]]:
    """Two image-gate processes serving one certificate, ready."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IMAGE_GATE_NAMESPACE}})
    first = new_image_gate(tmp_path / "a", control_plane, cloudsim, catalogue)
    second = new_image_gate(tmp_path / "b", control_plane, cloudsim, catalogue)
    second = ImageGate(
        workdir=second.workdir,
        env=second.env,
        port=second.port,
        health_port=second.health_port,
        cert_args=first.cert_args,
        ca_file=first.ca_file,
    )
    gates = [first, second]
    for gate in gates:
        gate.process.env["IMAGE_GATE_DRAIN_SECONDS"] = str(DRAIN_SECONDS)
    with all_running(gates) as running:
        yield running


async def test_a_rolling_restart_under_load_fails_no_review(replicas: list[ImageGate]) -> None:
    restarted, _ = replicas
    balancer = LoadBalancer([Backend(gate) for gate in replicas], ca_file=restarted.ca_file)
    review = admission_review(pod_manifest("api", "shop", UBUNTU_IMAGE))
    results: list[int | str] = []
    stop = asyncio.Event()

    async def steady_load(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                answer = await client.post(f"https://127.0.0.1:{balancer.port}/pods", json=review)
                results.append(answer.status_code if answer.json()["response"]["allowed"] else "denied")
            except (httpx.HTTPError, ValueError) as exc:
                results.append(repr(exc))
            await asyncio.sleep(0.005)

    async with balancer.running():
        await asyncio.wait_for(balancer.all_ready.wait(), timeout=30)
        verify = ssl.create_default_context(cafile=str(restarted.ca_file))
        async with httpx.AsyncClient(verify=verify, timeout=15, trust_env=False) as client:
            load = [asyncio.create_task(steady_load(client)) for _ in range(4)]
            try:
                await asyncio.sleep(1.0)
                assert restarted.process.pid is not None
                os.kill(restarted.process.pid, signal.SIGTERM)
                signalled = time.monotonic()
                await asyncio.sleep(0.5)
                assert restarted.health("/readyz").status_code == 503, "unready at once on SIGTERM"
                while restarted.process.is_running():
                    assert time.monotonic() - signalled < DRAIN_SECONDS + 10, restarted.describe_log()
                    await asyncio.sleep(0.1)
                assert time.monotonic() - signalled >= DRAIN_SECONDS, "it kept judging for the drain period"
                assert restarted.process.returncode == 0, restarted.describe_log()
                during = len(results)
                await asyncio.to_thread(restarted.start)
                await asyncio.sleep(1.0 + READINESS_POLL)
            finally:
                stop.set()
                await asyncio.gather(*load)
    failures = [result for result in results if result != 200]
    assert failures == [], f"{len(failures)} of {len(results)} reviews failed: {failures[:5]}"
    assert during > 50, "the load kept flowing while the replica drained"
    assert len(balancer.connections) == 2, "both replicas took connections"
