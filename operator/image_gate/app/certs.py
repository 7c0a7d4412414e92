"""
The serving certificate: from files, or generated for development.

In a cluster the certificate comes from files (cert-manager, the chart's
generated CA, or a Secret of your own), and it is re-read when the files
change, so a rotation needs no restart and no listener ever closes: both the
webhook and the health port serve through a `ReloadingContext`.

Without files, ``image-gate run`` generates a CA and a serving certificate with
``cryptography`` (kopf's own generator needs oscrypto, which fails on OpenSSL
3.0.x). That is for development: the API server must be given the CA
(``ca_file``) as the webhook's caBundle.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ReloadingContext", "ServingCertificate", "generate_development_certificate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServingCertificate:
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    """The CA to trust; set only for a generated certificate."""


def generate_development_certificate(directory: Path, hosts: Sequence[str], *, days: int = 365) -> ServingCertificate:
    """A fresh CA and a serving certificate for ``hosts`` (names or IPs), written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image-gate development CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    cert_file, key_file, ca_file = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(pem))
    ca_file.write_bytes(ca.public_bytes(pem))
    return ServingCertificate(cert_file=cert_file, key_file=key_file, ca_file=ca_file)


class ReloadingContext:
    """A server `ssl.SSLContext` whose certificate (and client CA) change without the listener closing.

    A listening socket keeps the context it was given for its whole life, so
    `context` is a fixed front: on every handshake its SNI callback (called
    with or without a server name) hands the connection the newest loaded
    context. A reload builds a whole new context and swaps it in only once
    the pair loaded and matched: a half-written rotation never touches the
    one in use (loading into a live context would leave it holding the new
    certificate with no key if the key does not match). The failed load is
    logged and retried at the next check.

    With ``client_ca_file`` (mutual TLS), a client must present a certificate
    signed by that CA or the handshake fails; the CA file is followed like the pair.
    """

    def __init__(self, certificate: ServingCertificate, *, client_ca_file: Path | None = None) -> None:
        self.certificate = certificate
        self.client_ca_file = client_ca_file
        self._fingerprint = self._read_fingerprint()
        self._current = self._load()  # start-up fails loudly on a bad pair
        self.context = self._load()
        self.context.sni_callback = self._hand_over

    @property
    def files(self) -> tuple[Path, ...]:
        files = (self.certificate.cert_file, self.certificate.key_file)
        return (*files, self.client_ca_file) if self.client_ca_file else files

    def _read_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certificate.cert_file, self.certificate.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _hand_over(self, connection: ssl.SSLObject, server_name: str | None, front: ssl.SSLContext) -> None:
        connection.context = self._current

    def reload_if_changed(self) -> bool:
        """Load the files if they changed; True when the context holds a valid certificate (always, after start)."""
        try:
            fingerprint = self._read_fingerprint()
            if fingerprint == self._fingerprint:
                return True
            self._current = self._load()
        except (OSError, ssl.SSLError) as exc:
            logger.warning("serving certificate not reloaded, the previous one stays in use: %s", exc)
            return True
        logger.info("serving certificate reloaded from %s", self.certificate.cert_file)
        self._fingerprint = fingerprint
        return True

    async def follow(self, interval: float = 60.0) -> None:
        """Check the files every ``interval`` seconds, until cancelled (mounted Secrets send no events)."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()
