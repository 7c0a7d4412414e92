"""Fixtures for e2e tests against a real control plane (see harness/controlplane.py).

The control plane is session-scoped: it takes several seconds to boot, and
tests isolate themselves with their own namespaces instead.

Without the binaries the e2e tests are skipped locally (build them with
``bash harness/build.sh``) but fail in CI, so a broken build cannot pass as green.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# harness/ lives at the repo root and is not an installed package; make it importable
# however pytest is invoked (``pytest`` does not put the cwd on sys.path, ``python -m pytest`` does).
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from harness import Binaries, BinariesMissingError, ControlPlane, locate  # noqa: E402


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
