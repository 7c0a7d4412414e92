"""
The HSS client: which base image an SWR image was built on.

Two calls per image, both documented in HSS API v5:

1. ``ListRegistryImages`` (``GET /v5/{project_id}/image/registries/images``)
   finds HSS's ``image_id`` for the reference, matching namespace, name and
   tag (or digest) exactly on our side, because the server-side filters may
   be fuzzy;
2. ``ListImageBasicImage`` (``GET /v5/{project_id}/image/{image_id}/basic-image``)
   gives the base image's OS name, version and layer digest.

A reference by digest cannot be filtered on the server (HSS filters by tag,
not digest), so its lookup reads one page of the repository's images, the
largest HSS serves, and no more: an unknown digest must not spend a minute of
HSS's 5-a-minute quota on pages. That page is kept for ``listing_ttl``
seconds, so the next digests of the same repository (a rollout, or someone
trying random digests) cost no call at all until it is due again.

Every call goes through the shared `CallPipeline` (quota, deadline, retries,
observation); this module supplies how to send a request to HSS and how to
read its answer. The public methods end in an `outcomes` value: they never
raise for anything the cloud or the network does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from image_gate.clouds._common import AsyncClosing, TlsVerify, http_client
from image_gate.clouds.huawei._logs import install_redaction
from image_gate.clouds.huawei.answers import (
    CLOUD,
    RegistryImage,
    base_image_info,
    classify,
    list_page,
    normalise_digest,
    pick,
    registry_image,
)
from image_gate.clouds.huawei.iam import REGION_EXTENSION, IamTokenAuth
from image_gate.clouds.huawei.inventory import MAX_PAGE_SIZE, RegistryPage
from image_gate.clouds.huawei.projects import API_LIST_PROJECTS, ProjectIds
from image_gate.clouds.huawei.signer import HuaweiSigner
from image_gate.clouds.pipeline import (
    Answer,
    AnsweredNotFound,
    Call,
    CallOptions,
    CallPipeline,
    Identity,
    credentials_within,
)
from image_gate.clouds.quota import Rate, SlidingWindowLimiter
from image_gate.clouds.retry import RetryPolicy
from image_gate.core.clock import Deadline, monotonic
from image_gate.core.cloudnames import HSS_BASE_IMAGE as API_BASE_IMAGE
from image_gate.core.cloudnames import HSS_LIST_IMAGES as API_LIST_IMAGES
from image_gate.core.images import ImageReference
from image_gate.core.locations import HssLocation
from image_gate.core.outcomes import BaseImage, Found, LookupFailed, NotFound, Outcome

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.12

__all__ = [
    "API_BASE_IMAGE",
    "API_LIST_IMAGES",
    "API_LIST_PROJECTS",
    "CLOUD",
    "DEFAULT_RATE",
    "HssClient",
    "RegistryImage",
    "RegistryPage",
    "hss_endpoint",
    "normalise_digest",
]

DEFAULT_RATE = Rate(5, 60.0)
"""HSS's published quota: 5 calls per minute per user on each API."""

LISTING_TTL = 30.0
"""Seconds a repository's listed page answers lookups by digest (the resolver's default negative TTL)."""

_ONE_ATTEMPT = RetryPolicy(attempts=1)

_MAX_LISTINGS = 1024
"""Repositories whose listed page is kept; the least recently listed goes first."""


def hss_endpoint(region: str) -> str:
    """``https://hss.{region}.myhuaweicloud.com`` (``.eu`` for eu-west-101), as in the SDK's region table."""
    domain = "myhuaweicloud.eu" if region == "eu-west-101" else "myhuaweicloud.com"
    return f"https://hss.{region}.{domain}"


@dataclass(frozen=True, slots=True)
class _Listing:
    """One page of a repository's images, as HSS listed it at ``at`` (the client's clock)."""

    rows: list[RegistryImage]
    total: int
    request_id: str | None
    at: float


@dataclass(frozen=True, slots=True)
class _Caller:
    """The identity of the next calls, and the project its credentials name (if any)."""

    identity: Identity
    project_id: str | None


class HssClient(AsyncClosing):
    """Looks up SWR images in HSS over one pooled HTTPS connection pool.

    ``auth`` is a `HuaweiSigner` (AK/SK, permanent or temporary) or an
    `IamTokenAuth`; see `default_auth`. The client owns it: `aclose` closes it.

    ``endpoint`` replaces ``https://hss.{region}.myhuaweicloud.com`` for every
    region (a proxy, or cloudsim); ``iam_endpoint`` likewise replaces
    ``https://iam.{region}.myhuaweicloud.com``, used to find a region's
    project id when neither the location nor the credentials give one.

    ``rate`` (default `DEFAULT_RATE`, per API per credential) and the other
    `CallOptions` pace, bound, retry and observe the calls (see `CallPipeline`).

    ``max_pages`` bounds the pages a lookup by tag reads; a lookup by digest
    reads one page, kept ``listing_ttl`` seconds for the repository's next
    digests (see the module's docstring).
    """

    def __init__(
        self,
        auth: HuaweiSigner | IamTokenAuth,
        *,
        endpoint: str | None = None,
        iam_endpoint: str | None = None,
        verify: TlsVerify = True,
        page_size: int = 200,
        max_pages: int = 5,
        listing_ttl: float = LISTING_TTL,
        transport: httpx.AsyncBaseTransport | None = None,
        **calls: Unpack[CallOptions],
    ) -> None:
        if not 1 <= page_size <= 200:
            raise ValueError("page_size must be within 1..200 (HSS's limit)")
        install_redaction()
        self._auth = auth
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        calls.setdefault("rate", DEFAULT_RATE)
        self._pipeline = CallPipeline(CLOUD, **calls)
        self._page_size = page_size
        self._max_pages = max_pages
        self._listing_ttl = listing_ttl
        self._listings: OrderedDict[Hashable, _Listing] = OrderedDict()
        self._clock = calls.get("clock", monotonic)
        self._projects = ProjectIds(self._request, endpoint=iam_endpoint)
        self._http = http_client(
            auth=auth, verify=verify, transport=transport, headers={"User-Agent": "image-gate (huawei-hss)"}
        )

    def __repr__(self) -> str:
        return f"HssClient(auth={self._auth!r}, endpoint={self._endpoint or 'https://hss.{region}.myhuaweicloud.com'})"

    async def aclose(self) -> None:
        """Close the connection pool and the credential sources."""
        await self._http.aclose()
        await self._auth.aclose()

    def endpoint(self, region: str) -> str:
        return self._endpoint or hss_endpoint(region)

    def rate(self, api: str) -> Rate:
        """The quota of one API, as the cloud states it (before the safety margin)."""
        return self._pipeline.rate(api)

    def limiter(self, api: str, fingerprint: str) -> SlidingWindowLimiter:
        return self._pipeline.limiter(api, fingerprint)

    # -- public lookups --------------------------------------------------------------------------

    async def find_image(
        self, image: ImageReference, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[RegistryImage]:
        """The HSS entry of an image, by tag, or by digest when the reference has one.

        A reference with a digest is matched on ``image_digest`` (listed
        without ``image_version``; among several tags of that digest the
        reference's own tag is preferred), so that what is judged is what the
        node pulls; one page at most, shared by the repository's digests for
        ``listing_ttl``. `NotFound` when HSS lists no such image: it has not
        synced the registry yet, or the image is in another enterprise project.
        """
        try:
            return await self._find_image(image, location, deadline)
        except LookupFailed as exc:
            return exc.failure
        except AnsweredNotFound as exc:
            return NotFound(f"HSS answered that {image} does not exist", request_id=exc.request_id)

    async def base_image(
        self, image: RegistryImage, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[BaseImage]:
        """The base image HSS found when it scanned ``image``; `NotFound` until it has."""
        try:
            return await self._base_image(image, location, deadline)
        except LookupFailed as exc:
            return exc.failure
        except AnsweredNotFound as exc:
            return NotFound(
                f"HSS no longer knows {image.display} (image id {image.image_id})", request_id=exc.request_id
            )

    async def registry_page(
        self,
        location: HssLocation,
        *,
        namespace: str,
        offset: int,
        deadline: Deadline,
        max_quota_wait: float | None = None,
    ) -> Outcome[RegistryPage]:
        """One page (200 rows) of the images HSS lists for ``namespace``: the inventory mirror's call.

        Rows of other namespaces are dropped (HSS's filter may be fuzzy); ``total`` and `RegistryPage.next_offset`
        count HSS's rows, so paging goes on where HSS's list does. ``max_quota_wait`` 0: only a quota slot free
        now (see ``clouds.huawei.inventory``).
        """
        try:
            project_id = await self._project_id(location, deadline)
            params = {
                "namespace": namespace,
                "image_type": location.image_type,
                "offset": str(offset),
                "limit": str(MAX_PAGE_SIZE),
            }
            if location.enterprise_project_id:
                params["enterprise_project_id"] = location.enterprise_project_id
            total, rows, request_id = await self._list_images(
                location, project_id, params, deadline, max_quota_wait=max_quota_wait
            )
        except LookupFailed as exc:
            return exc.failure
        except AnsweredNotFound as exc:
            return NotFound(f"HSS answered that namespace {namespace} does not exist", request_id=exc.request_id)
        mine = tuple(row for row in rows if row.namespace == namespace)
        page = RegistryPage(mine, offset=offset, listed=len(rows), total=total, request_id=request_id)
        return Found(page, request_id=request_id)

    # -- the two HSS calls ------------------------------------------------------------------------

    async def _list_images(
        self,
        location: HssLocation,
        project_id: str,
        params: Mapping[str, str],
        deadline: Deadline,
        *,
        max_quota_wait: float | None = None,
    ) -> tuple[int, list[RegistryImage], str | None]:
        """One page of ListRegistryImages (``params``: which images, which rows): HSS's total, the rows, the
        request id. The inventory's pages, a tag's search and a digest's one page all ask it this way."""
        answer = await self._call(
            API_LIST_IMAGES,
            f"{self.endpoint(location.region)}/v5/{quote(project_id, safe='')}/image/registries/images",
            params=params,
            headers={"Content-Type": "application/json", "X-Project-Id": project_id},
            region=location.region,
            deadline=deadline,
            max_quota_wait=max_quota_wait,
        )
        total, rows = list_page(answer, API_LIST_IMAGES, registry_image, location.image_type)
        return total, rows, answer.request_id

    async def _find_image(
        self, image: ImageReference, location: HssLocation, deadline: Deadline
    ) -> Outcome[RegistryImage]:
        project_id = await self._project_id(location, deadline)
        params: dict[str, str] = {
            "namespace": image.namespace,
            "image_name": image.short_name,
            "image_type": location.image_type,
            "limit": str(self._page_size),
        }
        if location.enterprise_project_id:
            params["enterprise_project_id"] = location.enterprise_project_id
        if image.digest is not None:
            return await self._find_by_digest(image, location, project_id, params, deadline)
        if image.tag is not None:
            params["image_version"] = image.tag
        what = f"{image.namespace}/{image.short_name}:{image.tag}"

        offset, request_id, listed = 0, None, 0
        for _ in range(self._max_pages):
            total, rows, request_id = await self._list_images(
                location, project_id, {**params, "offset": str(offset)}, deadline
            )
            listed += len(rows)
            match = pick(rows, image, None)
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
        return _not_synced(what, location, request_id)

    async def _find_by_digest(
        self,
        image: ImageReference,
        location: HssLocation,
        project_id: str,
        params: Mapping[str, str],
        deadline: Deadline,
    ) -> Outcome[RegistryImage]:
        """One page of the repository, listed at most once per ``listing_ttl``: see the module's docstring."""
        assert image.digest is not None
        key: Hashable = (location, project_id, image.namespace, image.short_name)
        listing = self._listings.get(key)
        if listing is None or self._clock() - listing.at >= self._listing_ttl:
            total, rows, request_id = await self._list_images(location, project_id, {**params, "offset": "0"}, deadline)
            listing = _Listing(rows, total, request_id, self._clock())
            self._listings[key] = listing
            if len(self._listings) > _MAX_LISTINGS:
                self._listings.popitem(last=False)
        self._listings.move_to_end(key)
        match = pick(listing.rows, image, normalise_digest(image.digest))
        if match is not None:
            return Found(match, request_id=listing.request_id)
        what = f"{image.namespace}/{image.short_name}@{image.digest}"
        if listing.total > len(listing.rows):
            return NotFound(
                f"HSS lists {listing.total} images of {image.namespace}/{image.short_name} and {what} is not among "
                f"the {len(listing.rows)} on the one page read for a digest (HSS allows 5 calls a minute); "
                "reference the image by tag, or keep fewer images of the repository in HSS",
                request_id=listing.request_id,
            )
        return _not_synced(what, location, listing.request_id)

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
            headers={"Content-Type": "application/json", "X-Project-Id": project_id, "region": location.region},
            region=location.region,
            deadline=deadline,
        )
        _, bases = list_page(answer, API_BASE_IMAGE, base_image_info, None)
        if not bases:
            return NotFound(
                f"HSS has no base image information for {image.display}; scan status: {image.scan_status or 'unknown'}",
                request_id=answer.request_id,
            )
        return Found(bases[0], request_id=answer.request_id)

    # -- the project id ---------------------------------------------------------------------------

    async def _project_id(self, location: HssLocation, deadline: Deadline) -> str:
        """The location's project, else the credentials', else IAM's project named after the region."""
        if location.project_id:
            return location.project_id
        caller = await self._caller(API_LIST_PROJECTS, deadline)
        if caller.project_id:
            return caller.project_id
        return await self._projects.project_id(location.region, caller.identity, deadline)

    # -- what HSS needs of the call pipeline: who calls, how to send, how to read the answer --------

    async def _caller(self, api: str, deadline: Deadline) -> _Caller:
        auth = self._auth
        if isinstance(auth, IamTokenAuth):
            return _Caller(Identity(auth.fingerprint, secrets=(auth.password.password,)), None)
        credentials = await credentials_within(auth.current, cloud=CLOUD, api=api, deadline=deadline)
        secrets = tuple(s for s in (credentials.sk, credentials.security_token) if s)
        return _Caller(Identity(credentials.fingerprint, credentials.ak, secrets), credentials.project_id)

    async def _call(
        self,
        api: str,
        url: str,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        region: str,
        deadline: Deadline,
        max_quota_wait: float | None = None,
    ) -> Answer:
        """A call to HSS as whoever the credentials are now (they may have been renewed since the last)."""
        caller = await self._caller(api, deadline)
        return await self._request(
            api, url, params, region, caller.identity, deadline, headers=headers, max_quota_wait=max_quota_wait
        )

    async def _request(
        self,
        api: str,
        url: str,
        params: Mapping[str, str],
        region: str,
        identity: Identity,
        deadline: Deadline,
        *,
        headers: Mapping[str, str] | None = None,
        max_quota_wait: float | None = None,
    ) -> Answer:
        """One GET through the pipeline: HSS's, or IAM's for `ProjectIds` (which needs no extra headers)."""

        async def send(remaining: float) -> httpx.Response:
            request = self._http.build_request(
                "GET",
                url,
                params=params,
                headers=dict(headers or {}),
                timeout=httpx.Timeout(remaining),
                extensions={REGION_EXTENSION: region},
            )
            return await self._http.send(request)

        def read(response: httpx.Response) -> Answer:
            return classify(api, response, identity, throttled_for=self.rate(api).period)

        # A caller that takes only a free slot (the inventory mirror) makes one attempt: a retry would take a
        # second slot of the same quota window.
        retry = _ONE_ATTEMPT if max_quota_wait is not None else None
        return await self._pipeline.call(
            Call(api, send, read, identity, where=region), deadline=deadline, max_quota_wait=max_quota_wait, retry=retry
        )


def _not_synced(what: str, location: HssLocation, request_id: str | None) -> NotFound:
    hint = "sync the registry in HSS (image-sync task)"
    if not location.enterprise_project_id:
        hint += ", or set enterpriseProjectId (all_granted_eps) if the image is in another enterprise project"
    return NotFound(
        f"HSS does not list {what} as a {location.image_type} in {location.region}: "
        f"HSS has not synced this image; {hint}",
        request_id=request_id,
    )
