"""
Reading HSS's answers: which outcome an HTTP answer means, error bodies the way the SDK
reads them, and the two lists HSS returns.

Pure functions of a response, an `Answer` or a JSON object: a failure is raised
as `LookupFailed`, named after the API that gave it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from image_gate.clouds._common import json_object
from image_gate.clouds.pipeline import Answer, AnsweredNotFound, Identity
from image_gate.core.cloudnames import HUAWEI as CLOUD
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BadResponse, BaseImage, LookupFailed, Throttled, Unauthorized, Unavailable

__all__ = [
    "CLOUD",
    "RegistryImage",
    "bad_answer",
    "base_image_info",
    "classify",
    "error_fields",
    "is_empty",
    "list_page",
    "normalise_digest",
    "pick",
    "registry_image",
    "retry_after",
]

_UNAUTHORIZED_CODES = frozenset(
    {"APIGW.0301", "APIGW.0302", "APIGW.0303", "APIG.0301", "APIG.0302", "APIG.0303", "HSS.0010", "HSS.0013"}
)
_THROTTLED_CODES = frozenset({"APIGW.0308", "APIG.0308"})
_NOT_FOUND_CODES = frozenset({"HSS.0011"})
_MAX_DETAIL = 300

T = TypeVar("T")


def normalise_digest(digest: str) -> str:
    """``sha256:<hex>`` whether or not HSS wrote the algorithm, lowercased."""
    digest = digest.strip().lower()
    return digest if ":" in digest else f"sha256:{digest}"


@dataclass(frozen=True, slots=True)
class RegistryImage:
    """One image as HSS lists it (``RegistryImagesInfo``): what the basic-image call needs."""

    image_id: str
    digest: str | None
    """``sha256:<hex>``, normalised; None when HSS does not say."""
    namespace: str
    image_name: str
    image_version: str
    image_type: str
    scan_status: str | None

    @property
    def display(self) -> str:
        return f"{self.namespace}/{self.image_name}:{self.image_version}"


def is_empty(body: Mapping[str, Any]) -> bool:
    """An answer that lists nothing (images, or IAM projects): the observer calls it ``not found``."""
    rows = body.get("data_list", body.get("projects"))
    return isinstance(rows, list) and not rows


def error_fields(data: Mapping[str, Any], depth: int = 0) -> tuple[str | None, str | None]:
    """``(error_code, error_msg)`` the way the SDK's DefaultExceptionHandler finds them."""
    for code_key, message_key in (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")):
        code, message = data.get(code_key), data.get(message_key)
        if code is not None or message is not None:
            return (str(code) if code is not None else None, str(message) if message is not None else None)
    if depth < 3:
        for value in data.values():
            if isinstance(value, Mapping):
                found = error_fields(value, depth + 1)
                if found != (None, None):
                    return found
    return None, None


def retry_after(value: str | None, *, default: float) -> float:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), else ``default``."""
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        return max(0.0, when.timestamp() - time.time())
    return default


def classify(api: str, response: httpx.Response, identity: Identity, *, throttled_for: float) -> Answer:
    """The JSON of a 2xx answer; anything else raised as the `Failure` it means.

    A throttled answer without ``Retry-After`` is held for ``throttled_for``
    seconds (the quota's period); an echoed credential is scrubbed from messages.
    """
    status = response.status_code
    request_id = response.headers.get("X-Request-Id") or response.headers.get("x-request-id")
    data = json_object(response)
    if 200 <= status < 300:
        if data is None:
            raise LookupFailed(
                BadResponse(
                    cloud=CLOUD,
                    api=api,
                    detail=f"HTTP {status} with a body that is not a JSON object "
                    f"({response.headers.get('Content-Type', 'no content type')})",
                    request_id=request_id,
                )
            )
        return Answer(data, request_id, "not found" if is_empty(data) else "found")

    code, message = error_fields(data) if data is not None else (None, None)
    if message is None:
        message = response.text[:_MAX_DETAIL] if data is None else None
    message = identity.scrub(message or response.reason_phrase or "no message")[:_MAX_DETAIL]
    request_id = request_id or (data.get("request_id") if data and isinstance(data.get("request_id"), str) else None)
    common: dict[str, Any] = {"cloud": CLOUD, "api": api, "code": code, "request_id": request_id}
    if status == 429 or code in _THROTTLED_CODES:
        wait = retry_after(response.headers.get("Retry-After"), default=throttled_for)
        detail = f"HSS throttled the call (HTTP {status}): {message}"
        raise LookupFailed(Throttled(detail=detail, retry_after=wait, **common))
    if status in (401, 403) or code in _UNAUTHORIZED_CODES:
        detail = f"HTTP {status}: {message} (credentials {identity.fingerprint})"
        raise LookupFailed(Unauthorized(detail=detail, **common))
    if code in _NOT_FOUND_CODES:
        raise AnsweredNotFound(request_id)
    if status >= 500:
        raise LookupFailed(Unavailable(detail=f"HTTP {status}: {message}", **common))
    raise LookupFailed(BadResponse(detail=f"HSS rejected the request (HTTP {status}): {message}", **common))


def bad_answer(api: str, detail: str, answer: Answer) -> LookupFailed:
    return LookupFailed(BadResponse(cloud=CLOUD, api=api, detail=detail, request_id=answer.request_id))


def list_page(
    answer: Answer,
    api: str,
    read: Callable[[Mapping[str, Any], str | None], T],
    image_type: str | None,
) -> tuple[int, list[T]]:
    """``total_num`` and the rows of ``data_list``, each read by ``read``."""
    body = answer.body
    rows = body.get("data_list")
    total = body.get("total_num", 0)
    if not isinstance(rows, list) or isinstance(total, bool) or not isinstance(total, int):
        raise bad_answer(api, "the answer has no data_list array or no integer total_num", answer)
    items: list[T] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise bad_answer(api, f"data_list[{index}] is not an object", answer)
        try:
            items.append(read(row, image_type))
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_answer(api, f"data_list[{index}]: {exc}", answer) from None
    return total, items


def _text(row: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise KeyError(f"{key} is missing")
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def registry_image(row: Mapping[str, Any], image_type: str | None) -> RegistryImage:
    digest = _text(row, "image_digest", required=False)
    return RegistryImage(
        image_id=_text(row, "image_id") or "",
        digest=normalise_digest(digest) if digest else None,
        namespace=_text(row, "namespace") or "",
        image_name=_text(row, "image_name") or "",
        image_version=_text(row, "image_version") or "",
        image_type=_text(row, "image_type", required=False) or image_type or "",
        scan_status=_text(row, "scan_status", required=False),
    )


def base_image_info(row: Mapping[str, Any], _: str | None) -> BaseImage:
    return BaseImage(
        os_name=_text(row, "os_name") or "",
        os_version=_text(row, "os_version") or "",
        layer_digest=_text(row, "layer_digest", required=False) or "",
    )


def pick(rows: list[RegistryImage], image: ImageReference, digest: str | None) -> RegistryImage | None:
    """The row that is ``image``: same repository and tag, or same digest (its own tag preferred)."""
    same_repo = [row for row in rows if row.namespace == image.namespace and row.image_name == image.short_name]
    if digest is None:
        return next((row for row in same_repo if row.image_version == image.tag), None)
    by_digest = [row for row in same_repo if row.digest == digest]
    return next((row for row in by_digest if row.image_version == image.tag), by_digest[0] if by_digest else None)
