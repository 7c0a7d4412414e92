"""
The Security Center (SAS, API 2018-12-03) client: from an ACR image to its registry digest.

Two calls, both RPC style (``POST /``, parameters in the query string, JSON back):

* ``DescribeImageInstances`` finds the repository id (``crr-...``) of
  ``namespace/name`` in the image's region (and ACR instance, when the
  registry mapping names it). SAS may match criteria loosely, so rows are
  kept only when they match exactly. The answer changes only when a
  repository is re-created, so the fact cache keeps it for long.
* ``DescribeImage`` answers the digest of one tag of that repository.

Every call goes through the shared `CallPipeline` (the client-side quota for
(API, account), the caller's deadline, retries of what may pass, observation);
this module supplies how to send a request to SAS and how to read its answer.
Public methods return outcomes (`image_gate.core.outcomes`) and never raise for
a cloud problem.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from image_gate.clouds._common import AsyncClosing, TlsVerify, WallClock, first_text, http_client, json_object
from image_gate.clouds.aliyun.credentials import AliyunCredential, AliyunCredentialsProvider, StaticCredentials
from image_gate.clouds.aliyun.signer import AliyunSigner, random_nonce
from image_gate.clouds.pipeline import Answer, Call, CallOptions, CallPipeline, Identity
from image_gate.clouds.quota import Rate
from image_gate.core.clock import Deadline
from image_gate.core.cloudnames import ALIYUN as CLOUD
from image_gate.core.cloudnames import SAS_DESCRIBE_IMAGE as API_DESCRIBE_IMAGE
from image_gate.core.cloudnames import SAS_DESCRIBE_IMAGE_INSTANCES as API_DESCRIBE_IMAGE_INSTANCES
from image_gate.core.images import ImageReference
from image_gate.core.locations import AcrLocation, AliyunSite
from image_gate.core.outcomes import (
    BadResponse,
    Failure,
    Found,
    LookupFailed,
    NotFound,
    Outcome,
    Throttled,
    Unauthorized,
    Unavailable,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.12

__all__ = [
    "API_DESCRIBE_IMAGE",
    "API_DESCRIBE_IMAGE_INSTANCES",
    "CLOUD",
    "DEFAULT_RATE",
    "SAS_API_VERSION",
    "SAS_ENDPOINTS",
    "AcrRepository",
    "SasClient",
    "classify_error",
    "throttle_time_left",
]

SAS_API_VERSION = "2018-12-03"
SAS_ENDPOINTS: Mapping[str, str] = {
    "china": "https://tds.cn-shanghai.aliyuncs.com",
    "international": "https://tds.ap-southeast-1.aliyuncs.com",
}
DEFAULT_RATE = Rate(5, 1.0)
"""SAS publishes no quota; "single-digit QPS per account" is the working assumption."""

THROTTLING_CODES = frozenset({"Throttling", "Throttling.User", "Throttling.Api"})
UNAUTHORIZED_CODES = frozenset(
    {
        "NoPermission",
        "Forbidden.RAM",
        "Forbidden.AccessKeyDisabled",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidTimeStamp.Expired",
        "MissingSecurityToken",
    }
)
UNAUTHORIZED_PREFIXES = ("InvalidAccessKeyId.", "InvalidSecurityToken.", "Forbidden.")
_RENEWABLE_CODE_PREFIXES = ("InvalidSecurityToken.", "InvalidAccessKeyId.")
_HEX64 = re.compile(r"[a-f0-9]{64}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AcrRepository:
    """An ACR repository as SAS knows it: what ``DescribeImage`` needs besides the tag."""

    region: str
    instance_id: str
    repo_id: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} ({self.repo_id} in {self.instance_id}, {self.region})"


def throttle_time_left(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from ``x-ratelimit-user-api`` / ``x-ratelimit-user`` ``TimeLeft`` (ms; the larger).

    Newer gateways also send ``x-acs-retry-after`` (ms), which the current SDK reads; it counts too.
    """
    waits: list[float] = []
    for name in ("x-ratelimit-user-api", "x-ratelimit-user"):
        for part in headers.get(name, "").split(","):
            key, _, value = part.partition(":")
            if key.strip() == "TimeLeft":
                waits.append(_milliseconds(value))
    waits.append(_milliseconds(headers.get("x-acs-retry-after", "")))
    waits = [wait for wait in waits if wait > 0]
    return max(waits) if waits else None


def _milliseconds(text: str) -> float:
    try:
        return float(text.strip()) / 1000.0
    except ValueError:
        return 0.0


def classify_error(response: httpx.Response, *, api: str) -> Failure:
    """The outcome for an HTTP 4xx/5xx answer, read as the SDK reads error bodies."""
    body = json_object(response) or {}
    code = first_text(body, "Code", "code")
    message = first_text(body, "Message", "message")
    request_id = first_text(body, "RequestId", "requestId")
    status = response.status_code
    detail = f"HTTP {status}" + (f": {message[:300]}" if message else "")
    common: dict[str, Any] = {"cloud": CLOUD, "api": api, "detail": detail, "code": code, "request_id": request_id}
    if code in THROTTLING_CODES or status == 429:
        return Throttled(retry_after=throttle_time_left(response.headers), **common)
    if code is not None and (code in UNAUTHORIZED_CODES or code.startswith(UNAUTHORIZED_PREFIXES)):
        return Unauthorized(**common)
    if status in (401, 403):
        return Unauthorized(**common)
    if status >= 500 or code == "ServerError":
        return Unavailable(**common)
    # Any other 4xx: we sent something SAS did not accept (a parameter it rejects). Asking again will not help.
    return BadResponse(**common)


class SasClient(AsyncClosing):
    """Looks images up in Security Center. One pooled connection set; close it with `aclose`.

    ``rate`` (default `DEFAULT_RATE`) and the other `CallOptions` pace,
    bound, retry and observe the calls (see `CallPipeline`).
    """

    def __init__(
        self,
        credentials: AliyunCredentialsProvider | AliyunCredential,
        *,
        site: AliyunSite = "china",
        endpoint: str | None = None,
        verify: TlsVerify = True,
        wall_clock: WallClock = time.time,
        nonce: Callable[[], str] = random_nonce,
        page_size: int = 50,
        max_pages: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        **calls: Unpack[CallOptions],
    ) -> None:
        self._credentials: AliyunCredentialsProvider = (
            StaticCredentials(credentials) if isinstance(credentials, AliyunCredential) else credentials
        )
        self.endpoint = (endpoint or SAS_ENDPOINTS[site]).rstrip("/")
        if "://" not in self.endpoint:
            self.endpoint = f"https://{self.endpoint}"
        calls.setdefault("rate", DEFAULT_RATE)
        self._pipeline = CallPipeline(CLOUD, **calls)
        self._page_size = page_size
        self._max_pages = max_pages
        self._http = http_client(
            base_url=self.endpoint,
            auth=AliyunSigner(self._credentials, clock=wall_clock, nonce=nonce),
            verify=verify,
            transport=transport,
            headers={"accept": "application/json", "user-agent": "image-gate"},
        )

    def __repr__(self) -> str:
        return f"SasClient(endpoint={self.endpoint!r}, account={self._credentials.fingerprint!r})"

    async def aclose(self) -> None:
        """Close the connection pool, and the credential provider's (RRSA keeps one to STS)."""
        await self._http.aclose()
        await self._credentials.aclose()

    async def find_repository(
        self, image: ImageReference, location: AcrLocation, *, deadline: Deadline
    ) -> Outcome[AcrRepository]:
        """The repository of ``image`` in ``location``, by exact namespace, name, region (and instance)."""
        api = API_DESCRIBE_IMAGE_INSTANCES
        namespace, name = image.namespace, image.short_name
        criteria = [{"name": "repoNamespace", "value": namespace}, {"name": "repoName", "value": name}]
        criteria.append({"name": "regionId", "value": location.region})
        if location.instance_id:
            criteria.append({"name": "instanceId", "value": location.instance_id})
        criteria_text = json.dumps(
            [{**item, "logicalExp": "AND"} for item in criteria], separators=(",", ":"), ensure_ascii=False
        )

        found: dict[tuple[str, str, str], AcrRepository] = {}
        request_id: str | None = None
        seen = 0
        try:
            for page in range(1, self._max_pages + 1):
                params = {
                    "Criteria": criteria_text,
                    "LogicalExp": "AND",
                    "PageSize": str(self._page_size),
                    "CurrentPage": str(page),
                }
                answer = await self._call(api, params, deadline=deadline)
                request_id = answer.request_id
                rows, total = _read_instances_page(answer, api=api)
                seen += len(rows)
                for row in rows:
                    repository = _match_row(row, namespace, name, location)
                    if repository is not None:
                        found.setdefault((repository.region, repository.instance_id, repository.repo_id), repository)
                if location.instance_id and found:
                    break  # region, instance, namespace and name name one repository: no need to read on
                if not rows or seen >= total:
                    break
            else:
                _log.warning("aliyun %s: stopped after %d pages for %s", api, self._max_pages, image.name)
        except LookupFailed as exc:
            return exc.failure

        where = f"{location.region}" + (f", instance {location.instance_id}" if location.instance_id else "")
        if not found:
            return NotFound(
                detail=f"Security Center knows no repository {namespace}/{name} in {where}", request_id=request_id
            )
        if len(found) > 1:
            instances = ", ".join(sorted({repo.instance_id for repo in found.values()}))
            return NotFound(
                detail=(
                    f"repository {namespace}/{name} is in several ACR instances in {where} ({instances}); "
                    f"set instanceId for {image.registry} in the registry mapping"
                ),
                request_id=request_id,
            )
        return Found(next(iter(found.values())), request_id=request_id)

    async def registry_digest(self, repository: AcrRepository, tag: str, *, deadline: Deadline) -> Outcome[str]:
        """The digest (``sha256:<hex>``) that ``tag`` of ``repository`` points at, per ``DescribeImage``."""
        api = API_DESCRIBE_IMAGE
        params = {
            "ImageRegionId": repository.region,
            "ImageInstanceId": repository.instance_id,
            "ImageRepoId": repository.repo_id,
            "ImageTag": tag,
        }
        try:
            answer = await self._call(api, params, deadline=deadline, label=_digest_label)
        except LookupFailed as exc:
            return exc.failure
        data = answer.body.get("Data")
        if data is None or data == {}:
            return NotFound(
                detail=f"Security Center has no digest for tag {tag} of {repository}", request_id=answer.request_id
            )
        if not isinstance(data, Mapping):
            return _bad(api, "Data is not an object", answer.request_id)
        digest = data.get("Digest")
        if digest is None or digest == "":
            return NotFound(
                detail=f"Security Center has no digest for tag {tag} of {repository}", request_id=answer.request_id
            )
        normalised = _normalise_digest(digest)
        if normalised is None:
            return _bad(api, "Data.Digest is not a digest", answer.request_id)
        return Found(normalised, request_id=answer.request_id)

    async def _call(
        self,
        api: str,
        params: Mapping[str, str],
        *,
        deadline: Deadline,
        label: Callable[[Answer], str] = lambda answer: "found",
    ) -> Answer:
        """One API call through the pipeline; raises `LookupFailed` with the outcome.

        ``label`` names a successful answer for the observer (``found`` / ``not found``).
        """
        headers = {"x-acs-action": api, "x-acs-version": SAS_API_VERSION}

        async def send(remaining: float) -> httpx.Response:
            return await self._http.post("/", params=params, headers=headers, timeout=remaining)

        def classify(response: httpx.Response) -> Answer:
            answer = self._classify(api, response)
            return Answer(answer.body, answer.request_id, label(answer))

        identity = Identity(self._credentials.fingerprint)
        return await self._pipeline.call(Call(api, send, classify, identity), deadline=deadline)

    def _classify(self, api: str, response: httpx.Response) -> Answer:
        """The JSON of a successful answer; anything else raised as the `Failure` it means."""
        if response.status_code >= 400:
            failure = classify_error(response, api=api)
            if isinstance(failure, Unauthorized) and (failure.code or "").startswith(_RENEWABLE_CODE_PREFIXES):
                self._credentials.invalidate()
            raise LookupFailed(failure)
        body = json_object(response)
        if body is None:
            raise LookupFailed(
                BadResponse(cloud=CLOUD, api=api, detail=f"HTTP {response.status_code} with a body that is not JSON")
            )
        return Answer(body, first_text(body, "RequestId", "requestId"))


def _digest_label(answer: Answer) -> str:
    data = answer.body.get("Data")
    return "found" if isinstance(data, Mapping) and data.get("Digest") else "not found"


def _bad(api: str, detail: str, request_id: str | None) -> BadResponse:
    return BadResponse(cloud=CLOUD, api=api, detail=detail, request_id=request_id)


def _read_instances_page(answer: Answer, *, api: str) -> tuple[list[Mapping[str, Any]], int]:
    rows = answer.body.get("ImageInstanceList")
    page_info = answer.body.get("PageInfo")
    if rows is None:
        rows = []
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise LookupFailed(_bad(api, "ImageInstanceList is not a list of objects", answer.request_id))
    total = page_info.get("TotalCount") if isinstance(page_info, Mapping) else None
    if total is None:
        total = len(rows)  # no paging information: take the page as all there is
    if not isinstance(total, int) or isinstance(total, bool):
        raise LookupFailed(_bad(api, "PageInfo.TotalCount is not a number", answer.request_id))
    return rows, total


def _match_row(row: Mapping[str, Any], namespace: str, name: str, location: AcrLocation) -> AcrRepository | None:
    fields = {key: row.get(key) for key in ("RepoNamespace", "RepoName", "RegionId", "InstanceId", "RepoId")}
    if not all(isinstance(value, str) for value in fields.values()):
        return None
    if fields["RepoNamespace"] != namespace or fields["RepoName"] != name or fields["RegionId"] != location.region:
        return None
    if location.instance_id and fields["InstanceId"] != location.instance_id:
        return None
    if not fields["RepoId"] or not fields["InstanceId"]:
        return None
    return AcrRepository(
        region=str(fields["RegionId"]),
        instance_id=str(fields["InstanceId"]),
        repo_id=str(fields["RepoId"]),
        namespace=namespace,
        name=name,
    )


def _normalise_digest(value: object) -> str | None:
    """``sha256:<hex>`` from SAS's digest, which comes without the algorithm prefix."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if ":" not in text:
        text = text.lower()
        return f"sha256:{text}" if _HEX64.fullmatch(text) else None
    algorithm, _, encoded = text.partition(":")
    if algorithm.lower() == "sha256":
        encoded = encoded.lower()
        return f"sha256:{encoded}" if _HEX64.fullmatch(encoded) else None
    return text if _DIGEST.fullmatch(text) else None
