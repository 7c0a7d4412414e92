"""Mutual TLS end to end: a kube-apiserver that presents a client certificate, an image-gate that demands one.

A control plane of its own (its kube-apiserver started with an AdmissionConfiguration whose
kubeconfig gives it a client certificate for webhooks, as charts/image-gate/README.md tells
operators to configure theirs) and an image-gate started with ``--client-ca-file``: pods are
admitted and denied through the API server as without mutual TLS, while a client without a
certificate from that CA is refused at the TLS handshake.
"""

from __future__ import annotations

import os
import socket
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from harness import Binaries, ControlPlane
from harness.controlplane import write_webhook_client_config
from harness.pki import WebhookClientPki, create_webhook_client_pki

from cloudsim.catalogue import Catalogue
from tests.e2e.imagegate import (
    CENTOS_IMAGE,
    CRD_FILE,
    CRD_NAME,
    IMAGE_GATE_NAMESPACE,
    UBUNTU_IMAGE,
    CloudSim,
    ImageGate,
    Kube,
    PolicyFactory,
    admission_review,
    applied,
    make_namespace,
    new_image_gate,
    pod_manifest,
    render_webhook_configuration,
    scoped_policy,
)

pytestmark = pytest.mark.e2e

MTLS_LABEL = "imagegate.io/mtls"
NO_CENTOS = {
    "mode": "Enforce",
    "onUnresolved": "Deny",
    "match": {"images": ["swr.*.myhuaweicloud.com/**"]},
    "baseImage": {"deniedOS": [{"name": "CentOS"}]},
}


@dataclass
class MutualTls:
    kube: Kube
    gate: ImageGate
    clients: WebhookClientPki
    namespace: str


@pytest.fixture(scope="module")
def mutual_tls(
    k8s_binaries: Binaries, cloudsim: CloudSim, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MutualTls]:
    work = tmp_path_factory.mktemp("mtls")
    clients = create_webhook_client_pki(work / "webhook-clients")
    config = write_webhook_client_config(work / "admission", clients.apiserver, webhook_host="*")
    with ControlPlane(k8s_binaries, admission_control_config=config) as control_plane:
        env = {**os.environ, **control_plane.env(), "KUBECACHEDIR": str(work / "kube-cache")}
        kube = Kube(control_plane, env)
        kube.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        kube.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IMAGE_GATE_NAMESPACE}})
        gate = new_image_gate(work / "image-gate", control_plane, cloudsim, catalogue)
        gate.process.env["IMAGE_GATE_CLIENT_CA_FILE"] = str(clients.ca.cert)
        token = uuid.uuid4().hex[:10]
        gate.start()
        try:
            configuration = render_webhook_configuration(
                kube, release="mtls", url=gate.url, ca_bundle=gate.ca_bundle, namespace_labels={MTLS_LABEL: token}
            )
            with applied(kube, configuration):
                namespace = make_namespace(kube, "mtls", {MTLS_LABEL: token})
                yield MutualTls(kube=kube, gate=gate, clients=clients, namespace=namespace)
        finally:
            gate.stop()


def test_the_api_server_with_its_client_certificate_admits_and_denies(mutual_tls: MutualTls) -> None:
    kube, namespace = mutual_tls.kube, mutual_tls.namespace
    policies = PolicyFactory(kube)
    try:
        policies.apply(scoped_policy(f"no-centos-{namespace}", namespace, NO_CENTOS))
        admitted = kube.apply(pod_manifest("api", namespace, UBUNTU_IMAGE), check=False)
        assert admitted.returncode == 0, admitted.stderr
        denied = kube.apply(pod_manifest("legacy", namespace, CENTOS_IMAGE), check=False)
        assert denied.returncode != 0
        assert 'admission webhook "pods.imagegate.io" denied the request' in denied.stderr, denied.stderr
        assert "CentOS Linux 7.9.2009" in denied.stderr, denied.stderr
    finally:
        policies.delete_all()


def test_a_client_without_a_certificate_is_refused_at_the_handshake(mutual_tls: MutualTls) -> None:
    gate = mutual_tls.gate
    context = ssl.create_default_context(cafile=str(gate.ca_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the refusal then fails the client's own handshake
    with (
        socket.create_connection(("127.0.0.1", gate.port), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    review = admission_review(pod_manifest("legacy", mutual_tls.namespace, CENTOS_IMAGE))
    with (
        httpx.Client(verify=ssl.create_default_context(cafile=str(gate.ca_file)), trust_env=False) as client,
        pytest.raises(httpx.HTTPError),
    ):
        client.post(f"{gate.url}/pods", json=review)


def test_a_client_with_a_certificate_of_the_ca_is_served(mutual_tls: MutualTls, tmp_path: Path) -> None:
    gate, clients = mutual_tls.gate, mutual_tls.clients
    context = ssl.create_default_context(cafile=str(gate.ca_file))
    context.load_cert_chain(clients.apiserver.cert, clients.apiserver.key)
    review = admission_review(pod_manifest("api", mutual_tls.namespace, UBUNTU_IMAGE))
    with httpx.Client(verify=context, trust_env=False, timeout=15) as client:
        answer = client.post(f"{gate.url}/pods", json=review)
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True
    assert gate.health("/readyz").status_code == 200, "probes need no client certificate"
