"""
Throwaway TLS for tests: a CA and a server certificate for 127.0.0.1 / localhost.

The same generator ``image-gate run`` uses for development certificates, so
tests talk real HTTPS to servers on loopback and verify them against the CA,
the way production verifies the clouds, instead of turning verification off::

    pki = make_pki(tmp_path)
    server = pki.server_context()          # for aiohttp / cloudsim
    client = pki.client_context()          # or verify=pki.ca_file
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from image_gate.app.certs import generate_development_certificate

__all__ = ["TestPki", "make_pki"]


@dataclass(frozen=True)
class TestPki:
    """PEM files of a CA and of a server certificate it signed."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_pki(directory: Path, *, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> TestPki:
    """Write a CA (``ca.crt``) and a certificate for ``hosts`` (``tls.crt``, ``tls.key``) into ``directory``."""
    certificate = generate_development_certificate(directory, hosts, days=1)
    assert certificate.ca_file is not None
    return TestPki(ca_file=certificate.ca_file, cert_file=certificate.cert_file, key_file=certificate.key_file)
