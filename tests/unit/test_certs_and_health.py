"""Serving certificates (generated, then rotated on disk) and the health server, over real TLS."""

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from harness.process import free_ports

from image_gate.app.certs import ReloadingContext, generate_development_certificate
from image_gate.app.health import serve_health
from image_gate.app.metrics import Metrics
from image_gate.kube.readiness import Readiness


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
            for _ in range(100):
                try:
                    response = await client.get(f"{url}/healthz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
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
