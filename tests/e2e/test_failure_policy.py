"""What the API server does when image-gate does not answer: the webhook's failurePolicy.

These tests stop an image-gate, so they run their own (not the session's): it generates its
own development CA (``--cert-dir``, the path without ``--cert-file``), and each test applies a
webhook configuration of its own, rendered by ``helm template`` and selecting only that test's
namespace.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from harness import ControlPlane

from cloudsim.catalogue import Catalogue
from tests.e2e.imagegate import (
    CENTOS_IMAGE,
    UBUNTU_IMAGE,
    CloudSim,
    ImageGate,
    Kube,
    PolicyFactory,
    applied,
    make_namespace,
    new_image_gate,
    render_webhook_configuration,
    scoped_policy,
    wait_for,
)

pytestmark = pytest.mark.e2e

FAILURE_LABEL = "imagegate.io/e2e-failure-policy"


@pytest.fixture(scope="module")
def gate(
    control_plane: ControlPlane,
    crd: dict[str, Any],
    cloudsim: CloudSim,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageGate]:
    """This module's own image-gate, with a generated certificate; tests may stop it."""
    process = new_image_gate(
        tmp_path_factory.mktemp("image-gate-failure-policy"),
        control_plane,
        cloudsim,
        catalogue,
        generated_certificate=True,
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def running_gate(gate: ImageGate) -> ImageGate:
    """The module's image-gate, (re)started if a previous test stopped it (with a new CA then)."""
    if not gate.process.is_running():
        gate.start()
    return gate


@pytest.fixture
def isolated_namespace(kube: Kube) -> Iterator[str]:
    """A namespace that only this module's webhook configurations select."""
    name = make_namespace(kube, "failure-policy", {FAILURE_LABEL: "true"})
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def centos_denied(policies: PolicyFactory, isolated_namespace: str) -> str:
    """An isolated namespace whose policy refuses CentOS, so that a judged pod is seen to be judged."""
    namespace = isolated_namespace
    policies.apply(
        scoped_policy(f"deny-centos-{namespace}", namespace, {"baseImage": {"deniedOS": [{"name": "CentOS"}]}})
    )
    return namespace


def webhook_for(kube: Kube, gate: ImageGate, namespace: str, failure_policy: str) -> dict[str, Any]:
    """The chart's webhook configuration for ``gate``, selecting only ``namespace``."""
    configuration = render_webhook_configuration(
        kube,
        release="e2e-failure",
        url=gate.url,
        ca_bundle=gate.ca_bundle,
        namespace_labels={FAILURE_LABEL: "true", "kubernetes.io/metadata.name": namespace},
        failure_policy=failure_policy,
    )
    assert {w["failurePolicy"] for w in configuration["webhooks"]} == {failure_policy}
    return configuration


def stop_and_wait_closed(gate: ImageGate) -> None:
    """Stop image-gate and wait until its webhook port refuses connections."""
    gate.stop()

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", gate.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, what=f"port {gate.port} to close")


def test_fail_refuses_pods_while_image_gate_is_down(kube: Kube, running_gate: ImageGate, centos_denied: str) -> None:
    namespace = centos_denied
    with applied(kube, webhook_for(kube, running_gate, namespace, "Fail")):
        up = kube.kubectl("run", "before", f"--image={UBUNTU_IMAGE}", "--namespace", namespace)
        assert up.stdout == "pod/before created\n", "judged and admitted while image-gate answers"

        stop_and_wait_closed(running_gate)
        down = kube.kubectl("run", "during", f"--image={UBUNTU_IMAGE}", "--namespace", namespace, check=False)
        assert down.returncode == 1
        port = running_gate.port
        assert down.stderr == (
            'Error from server (InternalError): Internal error occurred: failed calling webhook "pods.imagegate.io": '
            f'failed to call webhook: Post "https://127.0.0.1:{port}/pods?timeout=5s": '
            f"dial tcp 127.0.0.1:{port}: connect: connection refused\n"
        )
        assert kube.get_or_none("pod", "during", "--namespace", namespace) is None


def test_ignore_admits_pods_unchecked_while_image_gate_is_down(
    kube: Kube, running_gate: ImageGate, centos_denied: str
) -> None:
    namespace = centos_denied
    with applied(kube, webhook_for(kube, running_gate, namespace, "Ignore")):
        judged = kube.kubectl("run", "before", f"--image={CENTOS_IMAGE}", "--namespace", namespace, check=False)
        assert judged.returncode == 1, "while image-gate answers, Ignore changes nothing: CentOS is refused"
        assert 'admission webhook "pods.imagegate.io" denied the request' in judged.stderr

        stop_and_wait_closed(running_gate)
        unchecked = kube.kubectl("run", "during", f"--image={CENTOS_IMAGE}", "--namespace", namespace)
        assert unchecked.stdout == "pod/during created\n"
        assert unchecked.stderr == ""
