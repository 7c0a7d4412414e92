"""
What a lookup of an image in a cloud comes back with.

Every lookup ends in exactly one outcome, a value rather than an exception,
because the cache stores outcomes (a "not found" is cached for a short while,
a failure may be answered with a stale fact) and the evaluation turns them into
verdicts and messages. Outcomes carry the cloud's request id, for support
tickets, and never a credential.

``Found`` -- the fact.
``NotFound`` -- the cloud answered and does not know the image (yet).
``NotApplicable`` -- no registry mapping sends this image to this cloud.
``Failure`` and its subclasses -- the fact could not be obtained:

* ``Unauthorized`` -- credentials missing, wrong, expired, or not permitted; never retried.
* ``Throttled`` -- the cloud (or our own quota limiter) said "not now"; carries ``retry_after``.
* ``Unavailable`` -- 5xx, connection refused or reset, or a circuit breaker open.
* ``TimedOut`` -- no answer within the time we gave it.
* ``BadResponse`` -- the answer did not have the documented shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, TypeAlias, TypeVar

__all__ = [
    "BadResponse",
    "BaseImage",
    "Failure",
    "Found",
    "LookupFailed",
    "NotApplicable",
    "NotFound",
    "Outcome",
    "Throttled",
    "TimedOut",
    "Unauthorized",
    "Unavailable",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BaseImage:
    """The base image of a container image, as HSS reports it (names as HSS spells them)."""

    os_name: str
    os_version: str
    layer_digest: str


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    """The cloud knows the image and returned the fact."""

    value: T
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class NotFound:
    """The cloud answered and has no such image, or no fact about it yet.

    HSS returns an empty ``data_list`` until it has scanned an image: that is
    "not found", not an error.
    """

    detail: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class NotApplicable:
    """No registry mapping sends this image to this cloud, so it was not asked."""

    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """The fact could not be obtained. Subclasses say why."""

    kind: ClassVar[str] = "failure"

    cloud: str
    """``huawei`` or ``aliyun``."""

    api: str
    """The API that failed, e.g. ``ListRegistryImages`` or ``DescribeImage``."""

    detail: str
    """What happened, for humans. Never contains a credential."""

    request_id: str | None = None
    code: str | None = None
    """The cloud's error code, e.g. ``APIGW.0301`` or ``Throttling.User``."""

    @property
    def message(self) -> str:
        """One line for logs and deny messages."""
        text = f"{self.cloud} {self.api}: {self.kind}: {self.detail}"
        if self.code:
            text += f" (code {self.code})"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Unauthorized(Failure):
    """Credentials are missing, wrong, expired, or lack the permission. Never retried."""

    kind: ClassVar[str] = "unauthorized"


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled(Failure):
    """Too many calls: the cloud answered 429 / ``Throttling*``, or our own limiter would wait too long."""

    kind: ClassVar[str] = "throttled"
    retry_after: float | None = None
    """Seconds until a call may succeed, when the cloud said so."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable(Failure):
    """The service is failing: a 5xx, a refused or broken connection, or an open circuit breaker."""

    kind: ClassVar[str] = "unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut(Failure):
    """No answer in the time the lookup was given."""

    kind: ClassVar[str] = "timed out"


@dataclass(frozen=True, slots=True, kw_only=True)
class BadResponse(Failure):
    """The answer did not have the documented shape (not JSON, missing fields, wrong types)."""

    kind: ClassVar[str] = "bad response"


Outcome: TypeAlias = Found[T] | NotFound | NotApplicable | Failure


class LookupFailed(Exception):
    """Raised inside the cloud clients to unwind with a `Failure`; their public methods return it."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure
