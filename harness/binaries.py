"""Locate the control-plane binaries built by ``harness/build.sh``.

The binaries are large (kube-apiserver alone is ~100 MB) and slow to build, so
they live in a per-machine cache outside the repository, keyed on the
Kubernetes version. This module and build.sh must agree on that layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Default Kubernetes version; ``IMAGE_GATE_K8S_VERSION`` overrides it (build.sh reads the same variable).
DEFAULT_K8S_VERSION = "1.37.2"

BUILD_COMMAND = "bash harness/build.sh"


class BinariesMissingError(RuntimeError):
    """Raised when a binary is not in the cache; the message says how to build it."""


def k8s_version() -> str:
    """Return the Kubernetes version the harness expects (without a leading ``v``)."""
    return os.environ.get("IMAGE_GATE_K8S_VERSION", DEFAULT_K8S_VERSION).removeprefix("v")


def cache_root() -> Path:
    """Return the cache root: ``$IMAGE_GATE_CACHE`` or ``~/.cache/image-gate``."""
    override = os.environ.get("IMAGE_GATE_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "image-gate"


def bin_dir(version: str | None = None) -> Path:
    """Return the directory build.sh writes binaries for ``version`` into."""
    return cache_root() / f"k8s-v{version or k8s_version()}" / "bin"


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every executable the control plane and the tests use."""

    directory: Path
    version: str
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path


def locate(version: str | None = None) -> Binaries:
    """Find all binaries for ``version``, or raise :class:`BinariesMissingError` naming the build command."""
    version = version or k8s_version()
    directory = bin_dir(version)
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
    paths = {name: directory / name for name in names}
    missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
    if missing:
        raise BinariesMissingError(
            f"missing {', '.join(missing)} in {directory} (Kubernetes v{version}); "
            f"build them with `{BUILD_COMMAND}` (takes a while on first run)"
        )
    return Binaries(
        directory=directory,
        version=version,
        etcd=paths["etcd"],
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths["kube-controller-manager"],
        kubectl=paths["kubectl"],
        helm=paths["helm"],
    )
