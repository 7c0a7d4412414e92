"""
Container image references: parsing and normalisation.

Kubernetes stores ``spec.containers[].image`` as an opaque string; the
container runtime parses it with the grammar of ``distribution/reference``.
We follow that grammar, so that an image is judged by the same name the node
will pull, and we reject what the runtime would reject:

* ``nginx`` -> ``docker.io/library/nginx:latest``
* ``org/app:1.2`` -> ``docker.io/org/app:1.2``
* ``localhost:5000/app`` -> ``localhost:5000/app:latest``
* ``swr.cn-north-4.myhuaweicloud.com/org/app:v1@sha256:...`` keeps both the tag
  and the digest; the runtime pulls by digest, and the tag says which registry
  tag it claims to be.

A reference that gives only a digest has no tag (``tag is None``): there is
nothing to compare the registry's tag with.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_REGISTRY", "ImageReference", "InvalidImageReference"]

DEFAULT_REGISTRY = "docker.io"
_LEGACY_DEFAULT_REGISTRIES = frozenset({"index.docker.io", "registry-1.docker.io"})
_MAX_NAME_LENGTH = 255

# The pieces of distribution/reference's grammar (reference/regexp.go).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")
_WHITESPACE = re.compile(r"\s")


class InvalidImageReference(ValueError):
    """Raised when an image string is not a reference a container runtime would pull."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference."""

    registry: str
    """Registry host, with its port if any: ``docker.io``, ``localhost:5000``."""

    repository: str
    """Path inside the registry: ``library/nginx``, ``org/team/app``."""

    tag: str | None
    """The tag; ``latest`` when the reference gives neither tag nor digest."""

    digest: str | None
    """``algorithm:hex`` when the reference is pinned by digest."""

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        """Parse an image string as a container runtime would; raise `InvalidImageReference`.

        Parsed references are remembered: a cluster runs the same few hundred
        images over and over, and every review parses all of its containers'.
        """
        if not isinstance(reference, str):
            raise InvalidImageReference(repr(reference), "the image is not a string")
        return _parse(reference)

    @classmethod
    def _parse_uncached(cls, reference: str) -> ImageReference:
        if not isinstance(reference, str):
            raise InvalidImageReference(repr(reference), "the image is not a string")
        if not reference:
            raise InvalidImageReference(reference, "the image is empty")
        if _WHITESPACE.search(reference):
            raise InvalidImageReference(reference, "the image contains whitespace")

        remainder, digest = _split_digest(reference)
        name, tag = _split_tag(reference, remainder)
        registry, repository = _split_registry(reference, name)

        if len(f"{registry}/{repository}") > _MAX_NAME_LENGTH:
            raise InvalidImageReference(reference, f"the name is longer than {_MAX_NAME_LENGTH} characters")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """Registry and repository, without tag or digest: ``docker.io/library/nginx``."""
        return f"{self.registry}/{self.repository}"

    @property
    def host(self) -> str:
        """The registry host without its port."""
        if self.registry.startswith("["):
            return self.registry[: self.registry.index("]") + 1]
        return self.registry.rsplit(":", 1)[0] if ":" in self.registry else self.registry

    @property
    def namespace(self) -> str:
        """The first path component: the SWR organisation, or the ACR namespace."""
        return self.repository.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        """The path after the namespace: the SWR image name, or the ACR repository name."""
        parts = self.repository.split("/", 1)
        return parts[1] if len(parts) == 2 else parts[0]

    @property
    def normalized(self) -> str:
        """The full canonical form: ``docker.io/library/nginx:1.27@sha256:...``."""
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        return self.normalized


@functools.lru_cache(maxsize=4096)
def _parse(reference: str) -> ImageReference:
    return ImageReference._parse_uncached(reference)


def _split_digest(reference: str) -> tuple[str, str | None]:
    if "@" not in reference:
        return reference, None
    remainder, digest = reference.split("@", 1)
    if not _DIGEST.fullmatch(digest):
        raise InvalidImageReference(reference, f"{digest!r} is not a digest (expected sha256:<64 hex>)")
    algorithm, encoded = digest.split(":", 1)
    if algorithm == "sha256" and not _SHA256_HEX.fullmatch(encoded):
        raise InvalidImageReference(reference, "a sha256 digest has exactly 64 lowercase hex characters")
    return remainder, digest


def _split_tag(reference: str, remainder: str) -> tuple[str, str | None]:
    # A colon after the last slash separates the tag; one before it is a registry port.
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon <= last_slash:
        return remainder, None
    name, tag = remainder[:colon], remainder[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise InvalidImageReference(reference, f"{tag!r} is not a valid tag")
    return name, tag


def _split_registry(reference: str, name: str) -> tuple[str, str]:
    if not name:
        raise InvalidImageReference(reference, "the image has no name")
    first, sep, rest = name.partition("/")
    # Docker's rule: the first component is a registry if it looks like a host.
    looks_like_registry = bool(sep) and ("." in first or ":" in first or first == "localhost" or first.lower() != first)
    if looks_like_registry:
        if not _DOMAIN.fullmatch(first):
            raise InvalidImageReference(reference, f"{first!r} is not a valid registry host")
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, name

    if registry in _LEGACY_DEFAULT_REGISTRIES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"

    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            if component.lower() != component:
                raise InvalidImageReference(reference, "repository names must be lowercase")
            raise InvalidImageReference(reference, f"{component!r} is not a valid repository path component")
    return registry, path
