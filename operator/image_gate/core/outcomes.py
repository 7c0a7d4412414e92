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
  Its detail may name image-gate's cloud identity (IAM user and account, role
  ARN, Pod Identity URI): that goes to image-gate's log only, and pod creators
  see `Failure.public_message`.
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

    public_detail: str | None = None
    """What pod creators may read instead of ``detail``, when the detail names
    image-gate's cloud identity (a credential service's URI, an IAM user); None:
    the detail itself."""

    @property
    def message(self) -> str:
        """One line for image-gate's log: everything known, the identity included."""
        return self._line(self.detail)

    @property
    def public_message(self) -> str:
        """One line for whoever creates a pod (denials, warnings, Events): no cloud identity in it."""
        return self._line(self.detail if self.public_detail is None else self.public_detail)

    def _line(self, detail: str, *, request_id: bool = True) -> str:
        """``cloud api: kind: detail (code ...) (request id ...)``; without the request id when the detail has it."""
        text = f"{self.cloud} {self.api}: {self.kind}: {detail}"
        if self.code:
            text += f" (code {self.code})"
        if request_id and self.request_id:
            text += f" (request id {self.request_id})"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Unauthorized(Failure):
    """Credentials are missing, wrong, expired, or lack the permission. Never retried."""

    kind: ClassVar[str] = "unauthorized"

    @property
    def public_message(self) -> str:
        """The same words whatever the cloud said: who image-gate is in the cloud is for its log only.

        The cloud's answer to a refused credential names the IAM user and the
        account, the role or the credential service; a pod creator needs only
        to know that it is image-gate's credentials, and what to quote.
        """
        if self.request_id:
            why = f"the cloud refused image-gate's credentials (request id {self.request_id}; see image-gate's log)"
        else:
            why = "image-gate has no usable credentials for this cloud (see image-gate's log)"
        return self._line(why, request_id=False)


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
