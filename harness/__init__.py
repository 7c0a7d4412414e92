"""Test and demo harness: a real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager) on loopback, built from the Go module proxy by build.sh.
"""

from harness.binaries import Binaries, BinariesMissingError, locate
from harness.controlplane import ControlPlane, ControlPlaneError

__all__ = ["Binaries", "BinariesMissingError", "ControlPlane", "ControlPlaneError", "locate"]
