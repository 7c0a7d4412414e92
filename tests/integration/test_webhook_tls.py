"""The webhook's TLS over real HTTPS on 127.0.0.1: certificate rotation under load, and mutual TLS.

The review server runs in-process with image-gate's handlers behind kopf's admission function
(`tests.kopfwebhook`); clients are real TLS clients that verify the server like the API server does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from harness.pki import CertificateAuthority
from kopf._core.reactor.inventory import ResourceMemories

from image_gate.app.certs import ReloadingContext, ServingCertificate, generate_development_certificate
from image_gate.core.admission import Admission
from image_gate.kube.server import ReviewServer
from tests.kopfwebhook import NoFacts, kopf_webhook_fn, operator_registry, pod, review, serving

REVIEW = json.dumps(review(pod())).encode()


def trusting(certificate: ServingCertificate) -> ssl.SSLContext:
    """A client context trusting the certificate's CA, as the API server trusts the caBundle."""
    assert certificate.ca_file is not None
    return ssl.create_default_context(cafile=certificate.ca_file)


def issue(ca: CertificateAuthority, directory: Path, stem: str) -> ServingCertificate:
    """A serving certificate for 127.0.0.1 from ``ca``, as cert-manager renews one."""
    directory.mkdir(exist_ok=True)
    files = ca.issue(directory, stem, "image-gate", ips=["127.0.0.1"])
    return ServingCertificate(cert_file=files.cert, key_file=files.key, ca_file=ca.write(directory, "ca").cert)


async def served_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a new handshake gets."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True)).serial_number
    finally:
        writer.close()
        await writer.wait_closed()


def serial(certificate: ServingCertificate) -> int:
    return x509.load_pem_x509_certificate(certificate.cert_file.read_bytes()).serial_number


@pytest.fixture
async def rotating(tmp_path: Path) -> AsyncIterator[tuple[ReloadingContext, str]]:
    live = issue(CertificateAuthority("webhook CA"), tmp_path / "live", "tls")
    tls = ReloadingContext(live)
    follower = asyncio.create_task(tls.follow(interval=0.02))
    server = ReviewServer(address="127.0.0.1", port=0, ssl_context=tls.context, url_host="127.0.0.1")
    fn = kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=ResourceMemories())
    try:
        async for url in serving(server, fn):
            yield tls, url
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def test_rotating_the_certificate_under_load_fails_no_review(tmp_path: Path, rotating: Any) -> None:
    tls, url = rotating
    live = tls.certificate
    port = int(url.rsplit(":", 1)[1])
    ca = CertificateAuthority("webhook CA")  # the leaves are renewed, and once the CA too (caBundle updated)
    nexts = [issue(ca, tmp_path / "next", f"tls{i}") for i in range(3)]
    client_tls = trusting(live)
    assert nexts[0].ca_file is not None
    client_tls.load_verify_locations(cafile=nexts[0].ca_file)
    results: list[int | str] = []
    stop = asyncio.Event()

    async def load(keepalive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=5 if keepalive else 0)
        async with httpx.AsyncClient(verify=client_tls, limits=limits, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = await client.post(f"{url}/pods", content=REVIEW)
                    results.append(response.status_code)
                except httpx.HTTPError as exc:
                    results.append(repr(exc))

    clients = [asyncio.create_task(load(keepalive)) for keepalive in (True, False, False)]
    try:
        for certificate in nexts:
            await asyncio.sleep(0.2)
            # A half-written rotation first: the new certificate beside the old key, for a few checks.
            live.cert_file.write_bytes(certificate.cert_file.read_bytes())
            await asyncio.sleep(0.1)
            assert await served_serial(port, client_tls) != serial(certificate), "a mismatched pair was loaded"
            live.key_file.write_bytes(certificate.key_file.read_bytes())
            await asyncio.sleep(0.1)
            assert await served_serial(port, client_tls) == serial(certificate), "new handshakes get the new one"
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    failures = [result for result in results if result != 200]
    assert len(results) > 30, "the load ran throughout the rotations"
    assert failures == []


async def test_an_unreadable_certificate_keeps_the_old_one(tmp_path: Path, rotating: Any) -> None:
    tls, url = rotating
    before = serial(tls.certificate)
    tls.certificate.cert_file.write_text("-----BEGIN CERTIFICATE-----\ntruncated")
    tls.certificate.key_file.write_text("")
    await asyncio.sleep(0.1)
    async with httpx.AsyncClient(verify=trusting(tls.certificate)) as client:
        assert (await client.post(f"{url}/pods", content=REVIEW)).status_code == 200
    assert await served_serial(int(url.rsplit(":", 1)[1]), trusting(tls.certificate)) == before


@pytest.fixture
def client_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority("api server clients")


@pytest.fixture
async def mutual(tmp_path: Path, client_ca: CertificateAuthority) -> AsyncIterator[tuple[str, ServingCertificate]]:
    certificate = generate_development_certificate(tmp_path / "serving", ["127.0.0.1"])
    ca_file = client_ca.write(tmp_path, "client-ca").cert
    tls = ReloadingContext(certificate, client_ca_file=ca_file)
    server = ReviewServer(address="127.0.0.1", port=0, ssl_context=tls.context, url_host="127.0.0.1")
    fn = kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=ResourceMemories())
    async for url in serving(server, fn):
        yield url, certificate


def client_context(
    certificate: ServingCertificate, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    context = trusting(certificate)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_mutual_tls_serves_a_client_of_the_ca(
    tmp_path: Path, mutual: tuple[str, ServingCertificate], client_ca: CertificateAuthority
) -> None:
    url, certificate = mutual
    apiserver = client_ca.issue(tmp_path, "apiserver", "kube-apiserver")
    async with httpx.AsyncClient(verify=client_context(certificate, apiserver.cert, apiserver.key)) as client:
        response = await client.post(f"{url}/pods", content=REVIEW)
    assert response.status_code == 200
    assert response.json()["response"]["allowed"] is True


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_mutual_tls_refuses_a_client_without_a_certificate_at_the_handshake(
    mutual: tuple[str, ServingCertificate], version: ssl.TLSVersion
) -> None:
    url, certificate = mutual
    port = int(url.rsplit(":", 1)[1])
    context = client_context(certificate)
    context.maximum_version = version

    def handshake() -> bytes:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            # TLS 1.3: the client's half of the handshake ends before the server has judged
            # its (absent) certificate; the server's half fails and it closes: no HTTP is read.
            assert version == ssl.TLSVersion.TLSv1_3, "a TLS 1.2 handshake itself fails"
            conn.sendall(b"POST /pods HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            return conn.recv(100)

    try:
        answer = await asyncio.to_thread(handshake)
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""


async def test_mutual_tls_refuses_a_certificate_of_another_ca(
    tmp_path: Path, mutual: tuple[str, ServingCertificate]
) -> None:
    url, certificate = mutual
    stranger = CertificateAuthority("someone else").issue(tmp_path, "stranger", "kube-apiserver")
    async with httpx.AsyncClient(verify=client_context(certificate, stranger.cert, stranger.key)) as client:
        with pytest.raises(httpx.HTTPError):
            await client.post(f"{url}/pods", content=REVIEW)
