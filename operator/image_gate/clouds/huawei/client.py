"""
The HSS client: which base image an SWR image was built on.

Two calls per image, both documented in HSS API v5:

1. ``ListRegistryImages`` (``GET /v5/{project_id}/image/registries/images``)
   finds HSS's ``image_id`` for the reference, matching namespace, name and
   tag (or digest) exactly on our side, because the server-side filters may
   be fuzzy;
2. ``ListImageBasicImage`` (``GET /v5/{project_id}/image/{image_id}/basic-image``)
   gives the base image's OS name, version and layer digest.

Every call waits for the client-side quota first (HSS allows each user 5 calls
per minute on each API), is bounded by the caller's deadline, is retried
inside it when the failure may pass, and ends in a `lookups` outcome: the
public methods never raise for anything the cloud or the network does.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from image_gate.clouds._common import TlsVerify, json_object, tls_verify, transport_failure
from image_gate.clouds.huawei._logs import install_redaction
from image_gate.clouds.huawei.credentials import CredentialsError, CredentialsUnavailable, mask
from image_gate.clouds.huawei.iam import REGION_EXTENSION, IamTokenAuth, iam_endpoint
from image_gate.clouds.huawei.signer import HuaweiSigner
from image_gate.clouds.observe import CallObserver, NullObserver
from image_gate.clouds.quota import QuotaBook, QuotaExceeded, Rate, SlidingWindowLimiter
from image_gate.clouds.retry import RetryPolicy, call_with_retries
from image_gate.core.clock import Clock, Deadline, Sleep, monotonic, sleep
from image_gate.core.images import ImageReference
from image_gate.core.locations import HssLocation
from image_gate.core.outcomes import (
    BadResponse,
    BaseImage,
    Failure,
    Found,
    LookupFailed,
    NotFound,
    Outcome,
    Throttled,
    TimedOut,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "API_BASE_IMAGE",
    "API_LIST_IMAGES",
    "API_LIST_PROJECTS",
    "CLOUD",
    "DEFAULT_RATE",
    "HssClient",
    "RegistryImage",
    "hss_endpoint",
    "normalise_digest",
]

CLOUD = "huawei"
API_LIST_IMAGES = "ListRegistryImages"
API_BASE_IMAGE = "ListImageBasicImage"
API_LIST_PROJECTS = "KeystoneListProjects"
DEFAULT_RATE = Rate(5, 60.0)
"""HSS's published quota: 5 calls per minute per user on each API."""

_UNAUTHORIZED_CODES = frozenset(
    {"APIGW.0301", "APIGW.0302", "APIGW.0303", "APIG.0301", "APIG.0302", "APIG.0303", "HSS.0010", "HSS.0013"}
)
_THROTTLED_CODES = frozenset({"APIGW.0308", "APIG.0308"})
_NOT_FOUND_CODES = frozenset({"HSS.0011"})
_MAX_DETAIL = 300
_DEFAULT_RETRY = RetryPolicy()

log = logging.getLogger(__name__)
T = TypeVar("T")


def hss_endpoint(region: str) -> str:
    """``https://hss.{region}.myhuaweicloud.com`` (``.eu`` for eu-west-101), as in the SDK's region table."""
    domain = "myhuaweicloud.eu" if region == "eu-west-101" else "myhuaweicloud.com"
    return f"https://hss.{region}.{domain}"


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


@dataclass(frozen=True, slots=True)
class _Identity:
    fingerprint: str
    project_id: str | None
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Answer:
    data: dict[str, Any]
    request_id: str | None


class _NotFoundAnswer(Exception):
    """HSS answered that the resource does not exist (``HSS.0011``)."""

    def __init__(self, request_id: str | None) -> None:
        super().__init__("not found")
        self.request_id = request_id


class HssClient:
    """Looks up SWR images in HSS over one pooled HTTPS connection pool.

    ``auth`` is a `HuaweiSigner` (AK/SK, permanent or temporary) or an
    `IamTokenAuth`; see `default_auth`. The client owns it: `aclose` closes it.

    ``endpoint`` replaces ``https://hss.{region}.myhuaweicloud.com`` for every
    region (a proxy, or cloudsim); ``iam_endpoint`` likewise replaces
    ``https://iam.{region}.myhuaweicloud.com``, used to find a region's
    project id when neither the location nor the credentials give one.

    ``rate`` is the quota per API per credential (``rates`` per API name
    overrides it). The limiter spaces calls ``quota_margin`` seconds further
    apart than the quota needs (default: 5 % of the period, at least 0.25 s),
    because the gateway counts arrivals, not departures, and a call that
    travels slower than the next would otherwise land in the same window.
    """

    def __init__(
        self,
        auth: HuaweiSigner | IamTokenAuth,
        *,
        endpoint: str | None = None,
        iam_endpoint: str | None = None,
        verify: TlsVerify = True,
        quota: QuotaBook | None = None,
        rate: Rate = DEFAULT_RATE,
        rates: Mapping[str, Rate] | None = None,
        quota_margin: float | None = None,
        call_budget: float = 0.5,
        retry: RetryPolicy = _DEFAULT_RETRY,
        observer: CallObserver | None = None,
        clock: Clock = monotonic,
        sleep: Sleep = sleep,
        rng: Callable[[], float] = random.random,
        page_size: int = 200,
        max_pages: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not 1 <= page_size <= 200:
            raise ValueError("page_size must be within 1..200 (HSS's limit)")
        install_redaction()
        self._auth = auth
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._iam_endpoint = iam_endpoint.rstrip("/") if iam_endpoint else None
        self._quota = quota or QuotaBook(clock=clock, sleep=sleep)
        self._rate = rate
        self._rates = dict(rates or {})
        self._quota_margin = quota_margin
        self._call_budget = call_budget
        self._retry = retry
        self._observer: CallObserver = observer or NullObserver()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._page_size = page_size
        self._max_pages = max_pages
        self._projects: dict[tuple[str, str], str] = {}
        self._project_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._http = httpx.AsyncClient(
            auth=auth,
            verify=tls_verify(verify),
            transport=transport,
            headers={"User-Agent": "image-gate (huawei-hss)"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HssClient(auth={self._auth!r}, endpoint={self._endpoint or 'https://hss.{region}.myhuaweicloud.com'})"

    async def __aenter__(self) -> HssClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool and the credential sources."""
        await self._http.aclose()
        await self._auth.aclose()

    def endpoint(self, region: str) -> str:
        return self._endpoint or hss_endpoint(region)

    def rate(self, api: str) -> Rate:
        """The quota of one API, as the cloud states it (before the safety margin)."""
        return self._rates.get(api, self._rate)

    def limiter(self, api: str, fingerprint: str) -> SlidingWindowLimiter:
        rate = self.rate(api)
        margin = self._quota_margin if self._quota_margin is not None else max(0.25, 0.05 * rate.period)
        return self._quota.limiter((CLOUD, api, fingerprint), Rate(rate.calls, rate.period + margin))

    # -- public lookups --------------------------------------------------------------------------

    async def find_image(
        self, image: ImageReference, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[RegistryImage]:
        """The HSS entry of an image, by tag, or by digest when the reference has one.

        A reference with a digest is matched on ``image_digest`` (listed
        without ``image_version``; among several tags of that digest the
        reference's own tag is preferred), so that what is judged is what the
        node pulls. `NotFound` when HSS lists no such image: it has not
        synced the registry yet, or the image is in another enterprise project.
        """
        try:
            return await self._find_image(image, location, deadline)
        except LookupFailed as exc:
            return exc.failure
        except _NotFoundAnswer as exc:
            return NotFound(f"HSS answered that {image} does not exist", request_id=exc.request_id)

    async def base_image(
        self, image: RegistryImage, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[BaseImage]:
        """The base image HSS found when it scanned ``image``; `NotFound` until it has."""
        try:
            return await self._base_image(image, location, deadline)
        except LookupFailed as exc:
            return exc.failure
        except _NotFoundAnswer as exc:
            return NotFound(
                f"HSS no longer knows {image.display} (image id {image.image_id})", request_id=exc.request_id
            )

    async def lookup_base_image(
        self, image: ImageReference, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[BaseImage]:
        """`find_image` then `base_image`, within one deadline."""
        found = await self.find_image(image, location, deadline=deadline)
        if not isinstance(found, Found):
            return found
        return await self.base_image(found.value, location, deadline=deadline)

    # -- the two HSS calls ------------------------------------------------------------------------

    async def _find_image(
        self, image: ImageReference, location: HssLocation, deadline: Deadline
    ) -> Outcome[RegistryImage]:
        project_id = await self._project_id(location, deadline)
        url = f"{self.endpoint(location.region)}/v5/{quote(project_id, safe='')}/image/registries/images"
        params: dict[str, str] = {
            "namespace": image.namespace,
            "image_name": image.short_name,
            "image_type": location.image_type,
            "limit": str(self._page_size),
        }
        if image.digest is None and image.tag is not None:
            params["image_version"] = image.tag
        if location.enterprise_project_id:
            params["enterprise_project_id"] = location.enterprise_project_id
        wanted = normalise_digest(image.digest) if image.digest else None
        what = f"{image.namespace}/{image.short_name}" + (f"@{image.digest}" if image.digest else f":{image.tag}")

        offset, request_id, listed = 0, None, 0
        for _ in range(self._max_pages):
            answer = await self._call(
                API_LIST_IMAGES,
                url,
                params={**params, "offset": str(offset)},
                headers={"X-Project-Id": project_id},
                region=location.region,
                deadline=deadline,
            )
            request_id = answer.request_id
            total, rows = _list_page(answer, API_LIST_IMAGES, _registry_image, location.image_type)
            listed += len(rows)
            match = _pick(rows, image, wanted)
            if match is not None:
                return Found(match, request_id=request_id)
            offset += len(rows)
            if not rows or offset >= total:
                break
        else:
            return NotFound(
                f"HSS lists {listed} images of {image.namespace}/{image.short_name} and {what} is not among them "
                f"(stopped after {self._max_pages} pages)",
                request_id=request_id,
            )
        hint = "sync the registry in HSS (image-sync task)"
        if not location.enterprise_project_id:
            hint += ", or set enterpriseProjectId (all_granted_eps) if the image is in another enterprise project"
        return NotFound(
            f"HSS does not list {what} as a {location.image_type} in {location.region}: "
            f"HSS has not synced this image; {hint}",
            request_id=request_id,
        )

    async def _base_image(self, image: RegistryImage, location: HssLocation, deadline: Deadline) -> Outcome[BaseImage]:
        project_id = await self._project_id(location, deadline)
        url = (
            f"{self.endpoint(location.region)}/v5/{quote(project_id, safe='')}"
            f"/image/{quote(image.image_id, safe='')}/basic-image"
        )
        params = {
            "image_type": image.image_type or location.image_type,
            "namespace": image.namespace,
            "image_name": image.image_name,
            "image_version": image.image_version,
            "offset": "0",
            "limit": "10",
        }
        if location.enterprise_project_id:
            params["enterprise_project_id"] = location.enterprise_project_id
        answer = await self._call(
            API_BASE_IMAGE,
            url,
            params=params,
            headers={"X-Project-Id": project_id, "region": location.region},
            region=location.region,
            deadline=deadline,
        )
        _, bases = _list_page(answer, API_BASE_IMAGE, _base_image_info, None)
        if not bases:
            return NotFound(
                f"HSS has no base image information for {image.display}; scan status: {image.scan_status or 'unknown'}",
                request_id=answer.request_id,
            )
        return Found(bases[0], request_id=answer.request_id)

    # -- project ids -----------------------------------------------------------------------------

    async def _project_id(self, location: HssLocation, deadline: Deadline) -> str:
        """The location's project, else the credentials', else IAM's project named after the region (cached)."""
        if location.project_id:
            return location.project_id
        identity = await self._identity(API_LIST_PROJECTS, deadline)
        if identity.project_id:
            return identity.project_id
        key = (identity.fingerprint, location.region)
        cached = self._projects.get(key)
        if cached:
            return cached
        lock = self._project_locks.setdefault(key, asyncio.Lock())
        try:
            async with asyncio.timeout(deadline.remaining()):
                await lock.acquire()
        except TimeoutError:
            raise LookupFailed(
                TimedOut(cloud=CLOUD, api=API_LIST_PROJECTS, detail="no project id within the time left")
            ) from None
        try:
            cached = self._projects.get(key)  # found by whoever held the lock
            if cached:
                return cached
            endpoint = self._iam_endpoint or iam_endpoint(location.region)
            answer = await self._call(
                API_LIST_PROJECTS,
                f"{endpoint}/v3/projects",
                params={"name": location.region},
                headers={},
                region=location.region,
                deadline=deadline,
            )
            project_id = _project_from(answer, location.region)
            self._projects[key] = project_id
            log.info("huawei: project id of %s for %s found in IAM", location.region, identity.fingerprint)
            return project_id
        finally:
            lock.release()

    # -- one call, with quota, deadline, retries and classification ------------------------------

    async def _identity(self, api: str, deadline: Deadline) -> _Identity:
        auth = self._auth
        if isinstance(auth, IamTokenAuth):
            return _Identity(auth.fingerprint, None, (auth.password.password,))
        try:
            async with asyncio.timeout(max(deadline.remaining(), 0.001)):
                credentials = await auth.current()
        except TimeoutError:
            raise LookupFailed(
                TimedOut(cloud=CLOUD, api=api, detail="no credentials within the time left (credential service slow)")
            ) from None
        except CredentialsUnavailable as exc:
            raise LookupFailed(Unavailable(cloud=CLOUD, api=api, detail=str(exc))) from None
        except CredentialsError as exc:
            raise LookupFailed(Unauthorized(cloud=CLOUD, api=api, detail=str(exc))) from None
        secrets = tuple(s for s in (credentials.ak, credentials.sk, credentials.security_token) if s)
        return _Identity(credentials.fingerprint, credentials.project_id, secrets)

    async def _call(
        self,
        api: str,
        url: str,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        region: str,
        deadline: Deadline,
    ) -> _Answer:
        identity = await self._identity(api, deadline)
        limiter = self.limiter(api, identity.fingerprint)

        async def attempt() -> _Answer:
            return await self._attempt(api, limiter, url, params, headers, region, identity, deadline)

        return await call_with_retries(attempt, deadline=deadline, policy=self._retry, sleep=self._sleep, rng=self._rng)

    async def _attempt(
        self,
        api: str,
        limiter: SlidingWindowLimiter,
        url: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        region: str,
        identity: _Identity,
        deadline: Deadline,
    ) -> _Answer:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise LookupFailed(TimedOut(cloud=CLOUD, api=api, detail="the deadline passed before the call"))
        try:
            waited = await limiter.acquire(max_wait=max(0.0, remaining - self._call_budget))
        except QuotaExceeded as exc:
            raise LookupFailed(
                Throttled(
                    cloud=CLOUD,
                    api=api,
                    detail=f"the client-side quota ({self.rate(api)} per credential) has no free slot "
                    f"for {exc.wait:.1f}s, longer than the deadline allows",
                    retry_after=exc.wait,
                )
            ) from None
        if waited >= 0.001:  # the limiter reads its clock twice: a free slot can "wait" microseconds
            self._observer.quota_wait(cloud=CLOUD, api=api, seconds=waited)
        remaining = deadline.remaining()
        if remaining <= 0:
            raise LookupFailed(TimedOut(cloud=CLOUD, api=api, detail="the deadline passed while waiting for the quota"))

        request = self._http.build_request(
            "GET",
            url,
            params=params,
            headers={"Content-Type": "application/json", **headers} if api != API_LIST_PROJECTS else dict(headers),
            timeout=httpx.Timeout(remaining),
            extensions={REGION_EXTENSION: region},
        )
        started = self._clock()
        outcome = "unavailable"
        request_id: str | None = None
        try:
            try:
                async with asyncio.timeout(remaining):
                    response = await self._http.send(request)
            except CredentialsUnavailable as exc:
                raise LookupFailed(Unavailable(cloud=CLOUD, api=api, detail=self._scrub(str(exc), identity))) from None
            except CredentialsError as exc:
                raise LookupFailed(Unauthorized(cloud=CLOUD, api=api, detail=self._scrub(str(exc), identity))) from None
            except (httpx.HTTPError, TimeoutError) as exc:
                failure = transport_failure(exc, cloud=CLOUD, api=api)
                raise LookupFailed(_with_detail(failure, self._scrub(failure.detail, identity))) from None
            request_id = response.headers.get("X-Request-Id")
            answer = self._answer(api, response, limiter, identity)
            outcome = "not found" if _empty(answer.data) else "found"
            return answer
        except LookupFailed as exc:
            outcome = exc.failure.kind
            request_id = exc.failure.request_id or request_id
            raise
        except _NotFoundAnswer:
            outcome = "not found"
            raise
        finally:
            seconds = self._clock() - started
            self._observer.upstream_call(cloud=CLOUD, api=api, outcome=outcome, seconds=seconds)
            log.debug(
                "huawei %s %s: %s in %.3fs (request id %s, credentials %s)",
                api,
                region,
                outcome,
                seconds,
                request_id,
                identity.fingerprint,
            )

    def _answer(
        self, api: str, response: httpx.Response, limiter: SlidingWindowLimiter, identity: _Identity
    ) -> _Answer:
        """The JSON of a 2xx answer; anything else raised as the `Failure` it means."""
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
            return _Answer(data, request_id)

        code, message = _error_fields(data) if data is not None else (None, None)
        if message is None:
            message = response.text[:_MAX_DETAIL] if data is None else None
        message = self._scrub(message or response.reason_phrase or "no message", identity)[:_MAX_DETAIL]
        request_id = request_id or (
            data.get("request_id") if data and isinstance(data.get("request_id"), str) else None
        )

        if status == 429 or code in _THROTTLED_CODES:
            retry_after = _retry_after(response.headers.get("Retry-After"), default=self.rate(api).period)
            limiter.hold(retry_after)
            raise LookupFailed(
                Throttled(
                    cloud=CLOUD,
                    api=api,
                    detail=f"HSS throttled the call (HTTP {status}): {message}",
                    code=code,
                    request_id=request_id,
                    retry_after=retry_after,
                )
            )
        if status in (401, 403) or code in _UNAUTHORIZED_CODES:
            raise LookupFailed(
                Unauthorized(
                    cloud=CLOUD,
                    api=api,
                    detail=f"HTTP {status}: {message} (credentials {identity.fingerprint})",
                    code=code,
                    request_id=request_id,
                )
            )
        if code in _NOT_FOUND_CODES:
            raise _NotFoundAnswer(request_id)
        if status >= 500:
            raise LookupFailed(
                Unavailable(cloud=CLOUD, api=api, detail=f"HTTP {status}: {message}", code=code, request_id=request_id)
            )
        raise LookupFailed(
            BadResponse(
                cloud=CLOUD,
                api=api,
                detail=f"HSS rejected the request (HTTP {status}): {message}",
                code=code,
                request_id=request_id,
            )
        )

    @staticmethod
    def _scrub(text: str, identity: _Identity) -> str:
        """Replace any credential an upstream echoed back (the AK by its mask, the rest entirely)."""
        for index, secret in enumerate(identity.secrets):
            if secret and secret in text:
                text = text.replace(secret, mask(secret) if index == 0 else "<hidden>")
        return text


# -- reading answers ---------------------------------------------------------------------------------


def _with_detail(failure: Failure, detail: str) -> Failure:
    return failure if detail == failure.detail else type(failure)(cloud=failure.cloud, api=failure.api, detail=detail)


def _empty(data: dict[str, Any]) -> bool:
    rows = data.get("data_list", data.get("projects"))
    return isinstance(rows, list) and not rows


def _error_fields(data: Mapping[str, Any], depth: int = 0) -> tuple[str | None, str | None]:
    """``(error_code, error_msg)`` the way the SDK's DefaultExceptionHandler finds them."""
    for code_key, message_key in (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")):
        code, message = data.get(code_key), data.get(message_key)
        if code is not None or message is not None:
            return (str(code) if code is not None else None, str(message) if message is not None else None)
    if depth < 3:
        for value in data.values():
            if isinstance(value, Mapping):
                found = _error_fields(value, depth + 1)
                if found != (None, None):
                    return found
    return None, None


def _retry_after(value: str | None, *, default: float) -> float:
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


def _bad(api: str, detail: str, answer: _Answer) -> LookupFailed:
    return LookupFailed(BadResponse(cloud=CLOUD, api=api, detail=detail, request_id=answer.request_id))


def _list_page(
    answer: _Answer,
    api: str,
    read: Callable[[Mapping[str, Any], str | None], T],
    image_type: str | None,
) -> tuple[int, list[T]]:
    data = answer.data
    rows = data.get("data_list")
    total = data.get("total_num", 0)
    if not isinstance(rows, list) or isinstance(total, bool) or not isinstance(total, int):
        raise _bad(api, "the answer has no data_list array or no integer total_num", answer)
    items: list[T] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise _bad(api, f"data_list[{index}] is not an object", answer)
        try:
            items.append(read(row, image_type))
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(api, f"data_list[{index}]: {exc}", answer) from None
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


def _registry_image(row: Mapping[str, Any], image_type: str | None) -> RegistryImage:
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


def _base_image_info(row: Mapping[str, Any], _: str | None) -> BaseImage:
    return BaseImage(
        os_name=_text(row, "os_name") or "",
        os_version=_text(row, "os_version") or "",
        layer_digest=_text(row, "layer_digest", required=False) or "",
    )


def _pick(rows: list[RegistryImage], image: ImageReference, digest: str | None) -> RegistryImage | None:
    same_repo = [row for row in rows if row.namespace == image.namespace and row.image_name == image.short_name]
    if digest is None:
        return next((row for row in same_repo if row.image_version == image.tag), None)
    by_digest = [row for row in same_repo if row.digest == digest]
    return next((row for row in by_digest if row.image_version == image.tag), by_digest[0] if by_digest else None)


def _project_from(answer: _Answer, region: str) -> str:
    projects = answer.data.get("projects")
    if not isinstance(projects, list) or not all(isinstance(p, Mapping) for p in projects):
        raise _bad(API_LIST_PROJECTS, "the answer has no projects array", answer)
    ids = [p.get("id") for p in projects if isinstance(p.get("id"), str) and p.get("id")]
    if not ids:
        raise LookupFailed(
            Unauthorized(
                cloud=CLOUD,
                api=API_LIST_PROJECTS,
                detail=f"IAM shows these credentials no project named {region}; "
                "grant iam:projects:list, or set projectId in the registry mapping",
                request_id=answer.request_id,
            )
        )
    if len(ids) > 1:
        raise _bad(
            API_LIST_PROJECTS,
            f"IAM has {len(ids)} projects named {region} ({', '.join(map(str, ids))}); "
            "set projectId in the registry mapping",
            answer,
        )
    return str(ids[0])
