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

The registry host is canonical (`canonical_host`), so that globs, the registry
mapping and messages all see one spelling of each registry:

* lower case: host names are case-insensitive, and ``SWR.cn-north-4...`` is
  pulled from the same registry as ``swr.cn-north-4...``;
* no ``:443``: a runtime speaks HTTPS to a registry, and 443 is its default port
  (``:80`` is kept: only a registry configured as plain HTTP would use it);
  except on a single-label host (``registry:443``), which keeps it so that the
  canonical reference still reads as that host, not as a Docker Hub path;
* Docker Hub's other names (``index.docker.io``, ``registry-1.docker.io``,
  ``registry.hub.docker.com``) are ``docker.io``;
* a trailing dot (``swr.cn-north-4.myhuaweicloud.com./org/app``) is refused, as
  distribution/reference refuses it: no runtime would pull that image.

Two things a runtime refuses are refused here too: a bare 64-hex string (an
image ID, not a name: it names no registry and would run whatever image on the
node has that ID), and a digest whose algorithm the runtime cannot verify.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_REGISTRY",
    "DOCKER_HUB_ALIASES",
    "ImageReference",
    "InvalidImageReference",
    "canonical_host",
    "looks_like_host",
]

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
"""Other names of Docker Hub's registry, judged as ``docker.io``."""
_DEFAULT_PORT = "443"
_MAX_PATH_LENGTH = 255
"""distribution/reference limits the repository path (not the host) to 255 characters."""
_MAX_HOST_LENGTH = 253
_MAX_PORT_DIGITS = 5
"""The grammar sets no limit on the host; DNS does (253), and a port has at most 5 digits. A longer one names
no registry a node could reach, and keeping references short keeps every glob match fast."""

# The pieces of distribution/reference's grammar (reference/regexp.go).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
"""The algorithms go-digest verifies in a runtime binary (crypto/sha256 and crypto/sha512 are linked), with their
lengths; any other algorithm is ErrDigestUnsupported there, so the runtime would refuse the reference."""
_LOWER_HEX = re.compile(r"[a-f0-9]+")
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")
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
    """Canonical registry host, with its port if any: ``docker.io``, ``localhost:5000`` (see `canonical_host`)."""

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
        if _IMAGE_ID.fullmatch(reference):
            # ParseNormalizedNamed refuses it ("cannot specify 64-byte hexadecimal strings"); a runtime given it
            # through CRI looks it up as the ID of an image already on the node. Either way it names no
            # registry, so no policy could judge it and no fact could be looked up: refused like any other
            # reference that is not a name (evaluate: a violation of every policy covering the namespace).
            raise InvalidImageReference(
                reference, "an image ID (64 hex characters) names no registry or repository; use the image's name"
            )

        remainder, digest = _split_digest(reference)
        name, tag = _split_tag(reference, remainder)
        registry, repository = _split_registry(reference, name)

        if len(repository) > _MAX_PATH_LENGTH:
            raise InvalidImageReference(reference, f"the repository path is longer than {_MAX_PATH_LENGTH} characters")
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
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidImageReference(
            reference, f"digest algorithm {algorithm!r} is not one a runtime verifies (sha256, sha384, sha512)"
        )
    if len(encoded) != length or not _LOWER_HEX.fullmatch(encoded):
        raise InvalidImageReference(reference, f"a {algorithm} digest has exactly {length} lowercase hex characters")
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
    if sep and looks_like_host(first):
        if not _DOMAIN.fullmatch(first):
            # Stricter than distribution on purpose: it reads "a_b.com/x" as a path with no domain at all,
            # yet a runtime then pulls from the host "a_b.com". Judging it as Docker Hub would let an image
            # from elsewhere meet docker.io's policies; refused, it is a violation that says why.
            raise InvalidImageReference(reference, f"{first!r} is not a valid registry host")
        host, _, port = first.rpartition(":") if first.rfind(":") > first.rfind("]") else (first, "", "")
        if len(host) > _MAX_HOST_LENGTH or len(port) > _MAX_PORT_DIGITS:
            raise InvalidImageReference(reference, "the registry host or port is longer than DNS and TCP allow")
        registry, path = canonical_host(first), rest
    else:
        registry, path = DEFAULT_REGISTRY, name

    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"

    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            if component.lower() != component:
                raise InvalidImageReference(reference, "repository names must be lowercase")
            raise InvalidImageReference(reference, f"{component!r} is not a valid repository path component")
    return registry, path


def looks_like_host(component: str) -> bool:
    """Docker's rule for the first path component: a registry host if it has a dot or a port, is
    ``localhost``, or has upper case (repository paths are lower case)."""
    return "." in component or ":" in component or component == "localhost" or component.lower() != component


def canonical_host(host: str) -> str:
    """The one spelling of a registry host (with port) that globs, the mapping and messages see.

    Lower case, without the HTTPS default port ``:443``, and Docker Hub's
    aliases as ``docker.io``. Works on glob text too (``SWR.*.com:443`` ->
    ``swr.*.com``): it only lowercases, strips and adds. A single trailing dot
    is dropped, for hosts written in patterns and the mapping file; image
    references with one never get here, the grammar refuses them first.

    A single-label host (``Registry``, ``registry:443``) keeps, or gets,
    ``:443``: written ``registry/app``, the canonical reference would read
    back as Docker Hub's ``docker.io/registry/app``, another image.
    """
    host = host.lower()
    name, port = host, ""
    if host.rfind(":") > host.rfind("]"):
        name, _, port = host.rpartition(":")
    if name.endswith("."):
        name = name[:-1]
    if "." in name or name == "localhost" or name.startswith("["):
        port = "" if port == _DEFAULT_PORT else port
    elif not port:
        port = _DEFAULT_PORT
    host = f"{name}:{port}" if port else name
    return DEFAULT_REGISTRY if host in DOCKER_HUB_ALIASES else host
