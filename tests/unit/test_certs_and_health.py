"""Serving certificates (generated, then rotated on disk) and the health server, over real TLS."""

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from harness.process import free_ports

from image_gate.app.certs import ReloadingContext, generate_development_certificate
from image_gate.app.health import readiness_report, serve_health
from image_gate.app.metrics import Metrics
from image_gate.core.outcomes import Outcome, Unavailable
from image_gate.facts.breaker import BreakerSettings, CircuitBreaker
from image_gate.kube.readiness import Readiness
from tests.faketime import FakeTime


async def first_answer(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """The server's first answer: it starts as a task, so the first tries may find nothing listening yet."""
    for _ in range(100):
        try:
            return await client.get(url)
        except httpx.ConnectError:
            await asyncio.sleep(0.02)
    raise AssertionError(f"nothing answered at {url}")


def test_a_development_certificate_names_its_hosts_and_keeps_the_key_private(tmp_path: Path) -> None:
    cert = generate_development_certificate(tmp_path / "certs", ["127.0.0.1", "image-gate.example"])
    parsed = x509.load_pem_x509_certificate(cert.cert_file.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["image-gate.example"]
    assert cert.key_file.stat().st_mode & 0o077 == 0
    assert cert.ca_file is not None
    ssl.create_default_context(cafile=str(cert.ca_file))  # a usable CA bundle


async def test_health_server_reports_readiness_serves_metrics_and_follows_rotation(tmp_path: Path) -> None:
    first = generate_development_certificate(tmp_path / "one", ["127.0.0.1"])
    second = generate_development_certificate(tmp_path / "two", ["127.0.0.1"])
    tls = ReloadingContext(first)
    readiness, metrics, [port] = Readiness(), Metrics(), free_ports(1)
    server = asyncio.create_task(
        serve_health(
            address="127.0.0.1", port=port, tls=tls, readiness=readiness, metrics=metrics, reload_interval=0.05
        )
    )
    try:
        url = f"https://127.0.0.1:{port}"
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(first.ca_file))) as client:
            response = await first_answer(client, f"{url}/healthz")
            assert (response.status_code, response.text) == (200, "ok\n")
            not_ready = await client.get(f"{url}/readyz")
            assert (not_ready.status_code, not_ready.text) == (
                503,
                "not ready: the policy and namespace indexes are still loading\n",
            )
            readiness.indexes.set()
            readiness.webhook_listening = True
            assert (await client.get(f"{url}/readyz")).status_code == 200
            page = await client.get(f"{url}/metrics")
            assert "image_gate_admission_requests_total" in page.text

        # Rotate: the same files now hold a certificate from another CA.
        first.cert_file.write_bytes(second.cert_file.read_bytes())
        first.key_file.write_bytes(second.key_file.read_bytes())
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(second.ca_file))) as client:
            assert (await client.get(f"{url}/healthz")).status_code == 200
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(first.ca_file))) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{url}/healthz")
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def test_a_half_written_rotation_keeps_the_old_certificate(tmp_path: Path) -> None:
    cert = generate_development_certificate(tmp_path, ["127.0.0.1"])
    tls = ReloadingContext(cert)
    cert.key_file.write_text("not a key")
    assert tls.reload_if_changed() is True, "the old, valid certificate stays in use"


async def open_circuit(breaker: CircuitBreaker) -> None:
    async def failing() -> Outcome[str]:
        return Unavailable(cloud=breaker.cloud, api="ListRegistryImages", detail="HTTP 503")

    await breaker.call("ListRegistryImages", failing)


async def test_readyz_names_each_circuit_breaker_state_without_changing_readiness() -> None:
    time = FakeTime()
    settings = BreakerSettings(failure_threshold=1, cool_down=30)
    huawei, aliyun = CircuitBreaker("huawei", settings, clock=time), CircuitBreaker("aliyun", settings, clock=time)
    readiness = Readiness()
    assert readiness_report(readiness, (huawei, aliyun)) == (
        503,
        "not ready: the policy and namespace indexes are still loading\n"
        "huawei circuit breaker: closed\n"
        "aliyun circuit breaker: closed\n",
    )
    readiness.indexes.set()
    readiness.webhook_listening = True
    await open_circuit(huawei)
    assert readiness_report(readiness, (huawei, aliyun)) == (
        200,
        "ready\nhuawei circuit breaker: open\naliyun circuit breaker: closed\n",
    )
    await time.advance(30)
    assert readiness_report(readiness, (huawei, aliyun))[1].splitlines()[1] == "huawei circuit breaker: half-open"
    assert readiness_report(readiness) == (200, "ready\n"), "without breakers, the verdict alone"


async def test_readyz_serves_the_breaker_detail(tmp_path: Path) -> None:
    cert = generate_development_certificate(tmp_path, ["127.0.0.1"])
    readiness, [port] = Readiness(), free_ports(1)
    readiness.indexes.set()
    readiness.webhook_listening = True
    huawei = CircuitBreaker("huawei", BreakerSettings(failure_threshold=1))
    await open_circuit(huawei)
    server = asyncio.create_task(
        serve_health(
            address="127.0.0.1",
            port=port,
            tls=ReloadingContext(cert),
            readiness=readiness,
            metrics=Metrics(),
            breakers=(huawei, CircuitBreaker("aliyun")),
        )
    )
    try:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert.ca_file))) as client:
            response = await first_answer(client, f"https://127.0.0.1:{port}/readyz")
        assert (response.status_code, response.text) == (
            200,
            "ready\nhuawei circuit breaker: open\naliyun circuit breaker: closed\n",
        )
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
