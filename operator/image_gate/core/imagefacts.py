"""
The facts resolved about one image, and how fresh they are.

`ImageFacts` is what the fact resolver (``image_gate.facts.resolver``) answers
and what `image_gate.core.evaluate.decide` judges. A fact may be *stale*: a
`Found` past its TTL, answered from the cache because asking the cloud again
failed or took too long. The verdict stands on it all the same, so a
`StaleFact` records which fact, how old, and why, for the review's log line and
the admission warning (`image_gate.core.messages.stale_warning`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from image_gate.core.outcomes import BaseImage, Failure, Outcome

__all__ = ["FactName", "ImageFacts", "StaleFact", "failure_fields"]

FactName = Literal["base image", "registry digest"]


@dataclass(frozen=True, slots=True)
class StaleFact:
    """A fact answered past its TTL, standing in for the failures in ``because``."""

    fact: FactName
    age: float
    """Seconds since the fact was fetched from the cloud (of the oldest step that was stale)."""
    because: tuple[Failure, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """Plain data, for the review's log line and ``image-gate check --output json``."""
        return {
            "fact": self.fact,
            "age_seconds": round(self.age, 3),
            "because": [failure_fields(failure) for failure in self.because],
        }


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """The facts about one image; None where nobody asked."""

    base_image: Outcome[BaseImage] | None = None
    registry_digest: Outcome[str] | None = None
    stale: tuple[StaleFact, ...] = ()
    """The facts above that are stale `Found` answers; empty when everything is fresh."""
    hss_image_id: str | None = field(default=None, compare=False)
    """The id HSS knows the image by, when its lookup found the image (stored in the ImageFact).

    Where a fact came from, not a fact the verdict stands on: two answers with
    the same facts are equal whichever HSS image they were read from."""


def failure_fields(failure: Failure) -> dict[str, object]:
    """A lookup failure as plain data: which cloud and API, what kind of failure, and the cloud's ids."""
    return {
        "outcome": failure.kind,
        "cloud": failure.cloud,
        "api": failure.api,
        "detail": failure.detail,
        "code": failure.code,
        "request_id": failure.request_id,
    }
