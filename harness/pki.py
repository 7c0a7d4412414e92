"""Throwaway PKI for the local control plane, generated with ``cryptography``.

We do not use kopf's built-in generator (certbuilder + oscrypto): oscrypto 1.3.0
cannot detect OpenSSL >= 3.0.10. ECDSA P-256 keys are used throughout because
they are generated in microseconds (RSA would add seconds per start-up) and
every component (Go TLS, kube-apiserver's SA signer, kube-controller-manager's
CSR signer) accepts them.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Long enough for a demo left running over a weekend, short enough to be obviously throwaway.
VALIDITY = datetime.timedelta(days=7)
#: Back-date certificates so small clock differences never make them "not yet valid".
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertFiles:
    """Paths of a PEM certificate and its PEM private key."""

    cert: Path
    key: Path


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write key material readable by the owner only."""
    path.touch(mode=0o600)
    path.write_bytes(data)


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, common_name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM form (what a ``caBundle`` or ``--client-ca-file`` needs)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, stem: str) -> CertFiles:
        """Write the CA certificate and key as ``<stem>.crt`` / ``<stem>.key``."""
        files = CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
        files.cert.write_bytes(self.cert_pem)
        _write_private(files.key, _key_pem(self.key))
        return files

    def issue(
        self,
        directory: Path,
        stem: str,
        common_name: str,
        *,
        organizations: Iterable[str] = (),
        ips: Iterable[str] = (),
        dns_names: Iterable[str] = (),
    ) -> CertFiles:
        """Issue a leaf certificate; with SANs it is a server cert, otherwise a client cert."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        sans += [x509.DNSName(name) for name in dns_names]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if sans else ExtendedKeyUsageOID.CLIENT_AUTH
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        files = CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(files.key, _key_pem(key))
        return files


def write_key_pair(directory: Path, stem: str) -> CertFiles:
    """Write a bare key pair (``<stem>.pub`` / ``<stem>.key``), e.g. the service-account signer."""
    key = ec.generate_private_key(ec.SECP256R1())
    files = CertFiles(directory / f"{stem}.pub", directory / f"{stem}.key")
    files.cert.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    _write_private(files.key, _key_pem(key))
    return files


@dataclass(frozen=True)
class ClusterPki:
    """Every certificate and key the control plane components are started with."""

    ca: CertFiles
    ca_pem: bytes
    apiserver: CertFiles
    admin: CertFiles
    controller_manager: CertFiles
    service_account: CertFiles


def create_cluster_pki(directory: Path) -> ClusterPki:
    """Create the cluster CA and every certificate the components need, in ``directory``.

    One CA serves all purposes (serving, client auth, CSR signing), as in a
    minimal kubeadm cluster; separate CAs would add files without adding test value.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = CertificateAuthority("image-gate-test-ca")
    return ClusterPki(
        ca=ca.write(directory, "ca"),
        ca_pem=ca.cert_pem,
        apiserver=ca.issue(
            directory,
            "apiserver",
            "kube-apiserver",
            # 10.0.0.1 / kubernetes.default.* are the in-cluster names; harmless and realistic.
            ips=["127.0.0.1", "10.0.0.1"],
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        ),
        # system:masters bypasses RBAC: the admin of a throwaway cluster.
        admin=ca.issue(directory, "admin", "image-gate-admin", organizations=["system:masters"]),
        # The bootstrap ClusterRoleBinding grants this user exactly what kube-controller-manager needs.
        controller_manager=ca.issue(directory, "controller-manager", "system:kube-controller-manager"),
        service_account=write_key_pair(directory, "sa"),
    )


@dataclass(frozen=True)
class WebhookClientPki:
    """A CA for the clients a webhook serves (its ``--client-ca-file``) and the API server's certificate from it."""

    ca: CertFiles
    apiserver: CertFiles
    """What kube-apiserver presents to webhooks, through its AdmissionConfiguration kubeconfig."""


def create_webhook_client_pki(directory: Path) -> WebhookClientPki:
    """A separate CA (not the cluster's): a webhook trusting it trusts the API server, and no other cluster client."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = CertificateAuthority("image-gate-webhook-clients")
    return WebhookClientPki(
        ca=ca.write(directory, "webhook-client-ca"),
        apiserver=ca.issue(directory, "apiserver-webhook-client", "kube-apiserver"),
    )
