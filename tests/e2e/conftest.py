"""Fixtures for e2e tests against a real control plane (see harness/controlplane.py).

The control plane is session-scoped: it takes several seconds to boot, and
tests isolate themselves with their own namespaces instead.

Without the binaries the e2e tests are skipped locally (build them with
``bash harness/build.sh``) but fail in CI, so a broken build cannot pass as green.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from harness import Binaries, BinariesMissingError, ControlPlane, locate

# The fixtures of tests/e2e/imagegate.py (cloudsim, image-gate, the CRD, namespaces, policies) and
# tests/e2e/factstore.py (the ImageFact CRD, replicas sharing it), next to the helpers they use.
# Imported here, pytest offers them to every module in tests/e2e/; test modules import only the
# helpers and types they call.
from tests.e2e.audit import report_crd_fixture as report_crd_fixture
from tests.e2e.factstore import fact_crd_fixture, fact_sharing_replicas_fixture
from tests.e2e.imagegate import (
    catalogue_fixture,
    cloudsim_fixture,
    crd_fixture,
    e2e_token_fixture,
    image_gate_fixture,
    kube_fixture,
    namespace_fixture,
    policies_fixture,
    webhook_configuration_fixture,
)

__all__ = [
    "catalogue_fixture",
    "cloudsim_fixture",
    "control_plane",
    "crd_fixture",
    "e2e_token_fixture",
    "fact_crd_fixture",
    "fact_sharing_replicas_fixture",
    "image_gate_fixture",
    "k8s_binaries",
    "kube_env",
    "kube_fixture",
    "namespace_fixture",
    "policies_fixture",
    "pytest_collection_modifyitems",
    "pytest_terminal_summary",
    "webhook_configuration_fixture",
]


_HERE = os.path.dirname(__file__)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder needs the control plane: mark it ``e2e`` even if its module forgot to.

    ``-m "not e2e"`` is the fast loop and the first half of CI; an unmarked e2e test would run there
    and start control planes of its own.
    """
    for item in items:
        if str(item.path).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.e2e)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def k8s_binaries() -> Binaries:
    """The built binaries; skip (locally) or fail (CI) when they are missing."""
    try:
        return locate()
    except BinariesMissingError as exc:
        if _in_ci():
            pytest.fail(f"CI is set but the control-plane binaries are missing: {exc}")
        pytest.skip(str(exc))


_SERVED_VERSIONS: list[str] = []


@pytest.fixture(scope="session")
def control_plane(k8s_binaries: Binaries) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver + kube-controller-manager, shared by the whole session."""
    with ControlPlane(k8s_binaries) as cp:
        _SERVED_VERSIONS.append(cp.version)
        yield cp


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which Kubernetes the e2e tests ran against: the API server's own /version."""
    for version in _SERVED_VERSIONS:
        terminalreporter.write_line(f"e2e: kube-apiserver /version reported {version}")


@pytest.fixture
def kube_env(control_plane: ControlPlane) -> dict[str, str]:
    """A fresh environment for subprocesses: KUBECONFIG and PATH with helm and kubectl first."""
    return {**os.environ, **control_plane.env()}
