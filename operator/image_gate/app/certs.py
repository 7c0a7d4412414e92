"""
The serving certificate: from files, or generated for development.

In a cluster the certificate comes from files (cert-manager, the chart's
generated CA, or a Secret of your own), and it is re-read when the files
change, so a rotation needs no restart: kopf's webhook server restarts its
listener by itself, and `ReloadingContext` does the same for the health port.

Without files, ``image-gate run`` generates a CA and a serving certificate with
``cryptography`` (kopf's own generator needs oscrypto, which fails on OpenSSL
3.0.x). That is for development: the API server must be given the CA
(``ca_file``) as the webhook's caBundle.
"""

from __future__ import annotations

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
    """A server `ssl.SSLContext` that loads the certificate again when its files change.

    Loading into the same context object affects every later handshake, so
    the server never restarts. A half-written pair (during a rotation) is
    skipped and retried at the next check.
    """

    def __init__(self, certificate: ServingCertificate) -> None:
        self.certificate = certificate
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._fingerprint = ""
        if not self.reload_if_changed():
            raise ssl.SSLError(f"cannot load the serving certificate {certificate.cert_file}")

    def _read_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in (self.certificate.cert_file, self.certificate.key_file):
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def reload_if_changed(self) -> bool:
        """Load the files if they changed; True when the context holds a valid certificate."""
        try:
            fingerprint = self._read_fingerprint()
            if fingerprint == self._fingerprint:
                return True
            self.context.load_cert_chain(self.certificate.cert_file, self.certificate.key_file)
        except (OSError, ssl.SSLError) as exc:
            logger.warning("serving certificate not (re)loaded: %s", exc)
            return bool(self._fingerprint)
        if self._fingerprint:
            logger.info("serving certificate reloaded from %s", self.certificate.cert_file)
        self._fingerprint = fingerprint
        return True
