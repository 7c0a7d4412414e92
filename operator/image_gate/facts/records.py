"""
One fact as the cluster stores it: its name, its ``spec``, and its ``status`` in the resolver's vocabulary.

Pure: dictionaries in, dictionaries out, no Kubernetes client. The ImageFact
custom resource (``charts/image-gate/crds/imagegate.io_imagefacts.yaml``) is
the shape these functions read and write; ``image_gate.kube.factstore`` moves
them to and from the API server.

**Names.** A fact is named after what determines it: the cloud, where that
cloud knows the image (its `HssLocation` / `AcrLocation`), and the normalised
reference. The name is a readable prefix (which cloud, which image) and 128
bits of a SHA-256 of those three, so two replicas asking about the same image
create the same object (the second gets AlreadyExists) and two different facts
never share a name. Names are DNS-1123 subdomains, as the API server requires.

**Status.** The outcome in the words of ``image_gate.core.outcomes``: ``state``
is ``Found``, ``NotFound``, ``NotApplicable`` or a failure's kind spelled as a
type (``Unauthorized``, ``Throttled``, ...). A `Found` carries the fact (the
base image of an HSS fact, the digest of an ACR fact); every status carries
when it was observed and, except for facts that never change, when it
expires, and an HSS fact the id HSS knows the image by (``hssImageId``, for
an HSS console search or a support ticket). Times are wall-clock seconds since
the epoch here, RFC 3339 in the object, because every replica reads them
against its own clock.

**Compact in memory.** Every replica holds a `StoredFact` per ImageFact (up to
50,000): what it keeps of a body is what reviews and the leader read, and what
many facts share is one object: names and words that repeat (clouds, OS names
and versions, namespaces, failure APIs, messages) are interned, and one
`BaseImage` stands for every fact with the same base image (`shared_base_image`).

**Only what pod creators may read.** Whoever may read ImageFacts, and every
pod creator whose denial quotes a stored failure, reads ``message``: a
failure's message is its pod-facing detail (`Failure.public_detail`; for
`Unauthorized`, fixed words), never the detail that names image-gate's cloud
identity (IAM user and account, role ARN, credential service URI), which stays
in the leader's log.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from image_gate.core.cloudnames import ALIYUN, HUAWEI
from image_gate.core.images import ImageReference
from image_gate.core.locations import AcrLocation, HssLocation
from image_gate.core.outcomes import (
    BadResponse,
    BaseImage,
    Failure,
    Found,
    NotApplicable,
    NotFound,
    Outcome,
    Throttled,
    TimedOut,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "FACT_KIND",
    "FACT_PLURAL",
    "HASH_HEX_DIGITS",
    "MAX_NAME_LENGTH",
    "REQUESTED_AT",
    "REQUESTED_BY",
    "UNAUTHORIZED_DETAIL",
    "Cloud",
    "FactKey",
    "FactRecord",
    "StoredFact",
    "UnreadableRecord",
    "fact_name",
    "from_rfc3339",
    "outcome_from_status",
    "record_from_status",
    "shared_base_image",
    "spec_of",
    "status_of",
    "stored_fact",
    "to_rfc3339",
]

API_GROUP: Final = "imagegate.io"
API_VERSION: Final = "v1alpha1"
FACT_KIND: Final = "ImageFact"
FACT_PLURAL: Final = "imagefacts"

Cloud: TypeAlias = Literal["huawei", "aliyun"]
Location: TypeAlias = HssLocation | AcrLocation

HASH_HEX_DIGITS: Final = 32
"""128 bits of SHA-256: collisions are out of reach even for a cluster of millions of facts."""
MAX_NAME_LENGTH: Final = 253
_PREFIX_LENGTH: Final = 80
_NOT_NAME_CHARACTERS = re.compile(r"[^a-z0-9]+")
_CLOUD_PREFIX: Final[Mapping[str, str]] = {HUAWEI: "hss", ALIYUN: "acr"}

_MAX_TEXT = 512
"""Messages and details are cut to this length: a fact stays a few hundred bytes."""
_MAX_ID = 128
"""As the CRD allows for ``status.hssImageId``."""

UNAUTHORIZED_DETAIL: Final = "the cloud refused image-gate's credentials, or it has none (see image-gate's log)"
"""What an `Unauthorized` fact says in the cluster: the cloud's own words name image-gate's identity."""

_FAILURE_TYPES: Final[Mapping[str, type[Failure]]] = {
    "Unauthorized": Unauthorized,
    "Throttled": Throttled,
    "Unavailable": Unavailable,
    "TimedOut": TimedOut,
    "BadResponse": BadResponse,
    "Failed": Failure,
}
_FAILURE_STATES: Final[Mapping[type[Failure], str]] = {kind: state for state, kind in _FAILURE_TYPES.items()}


class UnreadableRecord(ValueError):
    """An ImageFact's spec or status does not have the shape this version writes (edited by hand, or newer)."""


# -- what a fact is about, and its name


@dataclass(frozen=True, slots=True)
class FactKey:
    """What determines one fact: which cloud is asked, where it knows the image, and the image."""

    cloud: Cloud
    location: Location
    image: ImageReference
    name: str = field(init=False, compare=False, repr=False)
    """The ImageFact's name, computed once: a review reads it for every fact it needs."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", fact_name(self.cloud, self.location, self.image))


def _location_fields(location: Location) -> dict[str, str]:
    """The location as the object's ``spec.location``: only fields that are set, in camelCase."""
    if isinstance(location, HssLocation):
        fields = {
            "region": location.region,
            "imageType": location.image_type,
            "projectId": location.project_id,
            "enterpriseProjectId": location.enterprise_project_id,
        }
    else:
        fields = {"region": location.region, "instanceId": location.instance_id}
    return {key: value for key, value in fields.items() if value}


def fact_name(cloud: Cloud, location: Location, image: ImageReference) -> str:
    """The ImageFact's name: ``hss-<repository>-<tag>-<128 bits of SHA-256>``, a DNS-1123 subdomain.

    The hash covers the cloud, every location field and the normalised
    reference, each on its own line, so no two different facts can collide by
    moving characters between fields. The readable part is for humans only.
    """
    fields = _location_fields(location)
    canonical = "\n".join(
        [cloud, *(f"{key}={fields[key]}" for key in sorted(fields)), image.normalized],
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_HEX_DIGITS]
    readable = image.repository.rsplit("/", 1)[-1]
    if image.tag is not None:
        readable += f"-{image.tag}"
    elif image.digest is not None:
        readable += "-" + image.digest.rsplit(":", 1)[-1][:12]
    readable = _NOT_NAME_CHARACTERS.sub("-", readable.lower()).strip("-")[:_PREFIX_LENGTH].strip("-")
    prefix = _CLOUD_PREFIX[cloud]
    return f"{prefix}-{readable}-{digest}" if readable else f"{prefix}-{digest}"


def spec_of(key: FactKey) -> dict[str, Any]:
    """The ``spec`` of the ImageFact that asks for ``key``: everything needed to resolve it again."""
    return {"cloud": key.cloud, "reference": key.image.normalized, "location": _location_fields(key.location)}


# -- the status, both ways


@dataclass(frozen=True, slots=True)
class FactRecord:
    """A stored outcome: what the cloud answered, when, and until when it holds."""

    outcome: Outcome[Any]
    observed_at: float
    """Seconds since the epoch."""
    expires_at: float | None
    """Seconds since the epoch; None for facts that never change (those about a digest)."""
    hss_image_id: str | None = None
    """HSS's id of the image (``ListRegistryImages``'s ``image_id``), when an HSS lookup found the image."""

    def fresh(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    @property
    def state(self) -> str:
        return _state(self.outcome)


def _state(outcome: Outcome[Any]) -> str:
    if isinstance(outcome, Found):
        return "Found"
    if isinstance(outcome, NotFound):
        return "NotFound"
    if isinstance(outcome, NotApplicable):
        return "NotApplicable"
    return _FAILURE_STATES.get(type(outcome), "Failed")


def to_rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_rfc3339(text: str) -> float:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UnreadableRecord(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _short(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def status_of(record: FactRecord) -> dict[str, Any]:
    """The ImageFact ``status`` for ``record``; only fields that carry something.

    Times are written to the second: a record rewritten within the same second
    with the same outcome compares equal, so the store skips the write.
    """
    outcome = record.outcome
    status: dict[str, Any] = {"state": _state(outcome), "observedAt": to_rfc3339(record.observed_at)}
    if record.expires_at is not None and not math.isinf(record.expires_at):
        status["expiresAt"] = to_rfc3339(record.expires_at)
    if isinstance(outcome, Found):
        value = outcome.value
        if isinstance(value, BaseImage):
            status["baseImage"] = {
                "osName": value.os_name,
                "osVersion": value.os_version,
                "layerDigest": value.layer_digest,
            }
        elif isinstance(value, str):
            status["digest"] = value
        else:
            raise TypeError(f"a fact of type {type(value).__name__} has no place in an ImageFact")
        request_id = outcome.request_id
    elif isinstance(outcome, NotFound):
        status["message"] = _short(outcome.detail)
        request_id = outcome.request_id
    elif isinstance(outcome, NotApplicable):
        status["message"] = _short(outcome.detail)
        request_id = None
    else:
        status["message"] = _short(_pod_facing_detail(outcome))
        failure: dict[str, Any] = {"cloud": outcome.cloud, "api": outcome.api}
        if outcome.code:
            failure["code"] = outcome.code
        if isinstance(outcome, Throttled) and outcome.retry_after is not None:
            failure["retryAfterSeconds"] = round(outcome.retry_after, 3)
        status["failure"] = failure
        request_id = outcome.request_id
    if request_id:
        status["requestId"] = _short(request_id)
    if record.hss_image_id:
        status["hssImageId"] = record.hss_image_id[:_MAX_ID]
    return status


def _pod_facing_detail(failure: Failure) -> str:
    """The failure's detail as a pod creator may read it: without image-gate's cloud identity."""
    if isinstance(failure, Unauthorized):
        return UNAUTHORIZED_DETAIL
    return failure.detail if failure.public_detail is None else failure.public_detail


_MAX_BASE_IMAGES: Final = 4096
"""Distinct base images remembered by `shared_base_image`: a cluster's images share far fewer."""
_base_images: dict[tuple[str, str, str], BaseImage] = {}


def shared_base_image(os_name: str, os_version: str, layer_digest: str) -> BaseImage:
    """The one `BaseImage` for these values: thousands of facts name the same few base images.

    A value (frozen), so sharing it changes nothing but the memory. The table is bounded and
    starts over when full, which costs a duplicate per fact read afterwards, never a wrong answer.
    """
    key = (os_name, os_version, layer_digest)
    known = _base_images.get(key)
    if known is None:
        if len(_base_images) >= _MAX_BASE_IMAGES:
            _base_images.clear()
        known = _base_images[key] = BaseImage(sys.intern(os_name), sys.intern(os_version), layer_digest)
    return known


def _word(text: str) -> str:
    """One object for a string that many facts repeat (``sys.intern``: freed with its last user)."""
    return sys.intern(text)


def _text(data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise UnreadableRecord(f"status.{key} must be a string, not {value!r}")
    return value


def outcome_from_status(status: Mapping[str, Any]) -> Outcome[Any]:
    """The outcome a ``status`` written by `status_of` stands for; `UnreadableRecord` when it is not one."""
    state = _text(status, "state")
    request_id = _text(status, "requestId", required=False)
    message = _word(_text(status, "message", required=False) or "")
    if state == "Found":
        base = status.get("baseImage")
        if isinstance(base, Mapping):
            fact: Any = shared_base_image(
                _text(base, "osName") or "", _text(base, "osVersion") or "", _text(base, "layerDigest") or ""
            )
        else:
            fact = _text(status, "digest")
        return Found(fact, request_id)
    if state == "NotFound":
        return NotFound(message, request_id)
    if state == "NotApplicable":
        return NotApplicable(message)
    kind = _FAILURE_TYPES.get(state or "")
    if kind is None:
        raise UnreadableRecord(f"status.state {state!r} is not one this version of image-gate knows")
    failure = status.get("failure")
    if not isinstance(failure, Mapping):
        raise UnreadableRecord(f"status.state {state} needs status.failure")
    code = _text(failure, "code", required=False)
    common: dict[str, Any] = {
        "cloud": _word(_text(failure, "cloud") or ""),
        "api": _word(_text(failure, "api") or ""),
        "detail": message,
        "request_id": request_id,
        "code": _word(code) if code is not None else None,
    }
    if kind is Throttled:
        retry_after = failure.get("retryAfterSeconds")
        return Throttled(**common, retry_after=float(retry_after) if isinstance(retry_after, int | float) else None)
    return kind(**common)


def record_from_status(status: Mapping[str, Any]) -> FactRecord:
    """The `FactRecord` in an ImageFact's ``status``; `UnreadableRecord` when it has none or a bad one."""
    observed = _text(status, "observedAt")
    expires = _text(status, "expiresAt", required=False)
    return FactRecord(
        outcome=outcome_from_status(status),
        observed_at=from_rfc3339(observed or ""),
        expires_at=from_rfc3339(expires) if expires is not None else None,
        hss_image_id=_text(status, "hssImageId", required=False),
    )


# -- an ImageFact object as the store sees it

REQUESTED_AT: Final = "imagegate.io/requested-at"
"""When a replica last needed the fact and found it missing or expired (RFC 3339)."""
REQUESTED_BY: Final = "imagegate.io/requested-by"
"""The namespace whose admission asked: the leader serves namespaces in turn."""


@dataclass(frozen=True, slots=True)
class StoredFact:
    """One ImageFact, read once when the watch delivers it, so that a review only reads this.

    Only what reviews and the leader read, never the body: kopf's body (and its raw dict) is
    gone after the event, and one of these stays per ImageFact in every replica.
    """

    name: str
    cloud: str
    reference: str
    record: FactRecord | None
    """None until the leader has written a status (or when the status is unreadable)."""
    resource_version: str | None = None
    requested_at: float | None = None
    requested_by: str = ""
    last_used: float | None = None
    """When a review last needed it, as recorded (at most once a day; ``status.lastUsed``)."""
    created_at: float | None = None

    def used_since(self) -> float | None:
        """The last sign of use: the recorded use, else the creation (a replica asked for it then)."""
        return self.last_used if self.last_used is not None else self.created_at

    def pending(self, now: float) -> bool:
        """The leader has something to do: no answer yet, or an expired one that somebody asked for again."""
        if self.record is None:
            return True
        if self.record.fresh(now):
            return False
        return self.requested_at is not None and self.requested_at > self.record.observed_at


def stored_fact(body: Mapping[str, Any]) -> StoredFact:
    """Read an ImageFact object; a status this version cannot read counts as no status (it is rewritten)."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    annotations = metadata.get("annotations") or {}
    status = body.get("status") or {}
    record: FactRecord | None = None
    if status.get("state"):
        try:
            record = record_from_status(status)
        except UnreadableRecord:
            record = None
    return StoredFact(
        name=str(metadata.get("name") or ""),
        cloud=_word(str(spec.get("cloud") or "")),
        reference=str(spec.get("reference") or ""),
        record=record,
        resource_version=metadata.get("resourceVersion"),
        requested_at=_time_or_none(annotations.get(REQUESTED_AT)),
        requested_by=_word(str(annotations.get(REQUESTED_BY) or "")),
        last_used=_time_or_none(status.get("lastUsed")),
        created_at=_time_or_none(metadata.get("creationTimestamp")),
    )


def _time_or_none(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return from_rfc3339(value)
    except UnreadableRecord:
        return None
