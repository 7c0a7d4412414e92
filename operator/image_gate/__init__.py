"""image-gate: a Kubernetes admission controller that judges container images by their base OS and digest."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("image-gate")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
