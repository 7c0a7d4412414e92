"""A fixed set of facts for the fuzz targets: what a cloud would say about an image, by its canonical name.

Each image is given one of a few base images and registry digests, chosen by a hash of its normalised
reference, so every spelling of one image meets the same facts (as it would through the resolver's
cache, which is keyed by the normalised reference) and different images meet all kinds of facts.
"""

from __future__ import annotations

import hashlib

from image_gate.core.clock import Deadline
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, NotFound, Outcome, TimedOut, Unavailable

__all__ = ["FixedFacts", "facts_of"]

_LAYER = "sha256:" + "1" * 64
_OTHER_DIGEST = "sha256:" + "2" * 64
_BASE_IMAGES: tuple[Outcome[BaseImage], ...] = (
    Found(BaseImage("Debian GNU/Linux", "12", _LAYER), request_id="r-1"),
    Found(BaseImage("CentOS Linux", "7.9.2009", _LAYER), request_id="r-2"),
    Found(BaseImage("Ubuntu", "20.04", _LAYER), request_id="r-3"),
    Found(BaseImage("Ubuntu", "24.04", _LAYER), request_id="r-4"),
    NotFound("HSS has not scanned it yet", request_id="r-5"),
    TimedOut(cloud="huawei", api="ListImages", detail="no answer within the time left"),
)


def _pick(image: ImageReference, salt: str, count: int) -> int:
    digest = hashlib.sha256(f"{salt}:{image.normalized}".encode()).digest()
    return digest[0] % count


def facts_of(image: ImageReference, *, base_image: bool = True, digest: bool = True) -> ImageFacts:
    """The facts the fixed clouds know about ``image`` (only those asked for)."""
    digests: tuple[Outcome[str], ...] = (
        Found(image.digest or _OTHER_DIGEST, request_id="d-1"),  # the registry serves the pinned digest
        Found(_OTHER_DIGEST, request_id="d-2"),
        NotFound("Security Center has no digest for this tag", request_id="d-3"),
        Unavailable(cloud="aliyun", api="DescribeImage", detail="HTTP 503"),
    )
    return ImageFacts(
        base_image=_BASE_IMAGES[_pick(image, "base", len(_BASE_IMAGES))] if base_image else None,
        registry_digest=digests[_pick(image, "digest", len(digests))] if digest else None,
    )


class FixedFacts:
    """A `image_gate.core.admission.FactSource` answering `facts_of` at once (no cloud in these targets)."""

    async def resolve(self, image: ImageReference, *, base_image: bool, digest: bool, deadline: Deadline) -> ImageFacts:
        return facts_of(image, base_image=base_image, digest=digest)
