"""
Huawei Cloud HSS (API v5), IAM and CCE Pod Identity, simulated on the documented wire format.

HSS, behind the API gateway (AK/SK ``SDK-HMAC-SHA256`` or ``X-Auth-Token``, see `cloudsim.hss_auth`):

* ``GET /v5/{project_id}/image/registries/images`` (``ListRegistryImages``): the catalogue's
  HSS images, filtered by ``namespace`` / ``image_name`` / ``image_version`` as *substrings*
  (the real filters may be fuzzy: clients must match exactly themselves) and exactly by
  ``image_type``, ``scan_status``; ``offset`` 0..2,000,000 and ``limit`` 1..200 (default 10),
  anything else 400 ``HSS.0001``. ``image_digest`` is written with ``sha256:`` for every
  other image and without it for the rest, since HSS is documented both ways.
* ``GET /v5/{project_id}/image/{image_id}/basic-image`` (``ListImageBasicImage``): needs the
  ``region`` header and ``image_type`` (400 ``HSS.0001`` otherwise); a repository image is
  identified by ``image_type`` + ``namespace`` + ``image_name`` + ``image_version`` and its
  ``image_id``; one ``data_list`` entry once scanned, none before (``base_image: null``).
* The project in the path must be the caller's (400 ``HSS.0010`` otherwise).

IAM: ``POST /v3/auth/tokens`` (password method; the token in ``X-Subject-Token``, 24 h) and
``GET /v3/projects?name=<region>`` (signed): one project per credential, for every region.

CCE Pod Identity: ``POST /pod-identity/credentials`` with ``Authorization: <token>`` (any
token that is not empty and does not start with ``invalid``) and body ``{}`` mints temporary
AK/SK/security token credentials valid for an hour.

Every answer carries ``X-Request-Id``; errors are ``{"error_code", "error_msg", "request_id"}``
(Keystone-style ``{"error": {...}}`` for IAM). Calls are counted per API in ``state.faults``
(`API_NAMES`) and suffer the next injected fault before anything else. ``state.hss_rate``
limits each user (AK or IAM user) per HSS API with a sliding window: beyond it, 429
``APIGW.0308`` with ``Retry-After``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from cloudsim.catalogue import CatalogueImage
from cloudsim.faults import Fault, suffer_common_fault
from cloudsim.hss_auth import Caller, HssIdentities, Rejected, iso_time
from cloudsim.server import SimState
from image_gate.clouds.quota import QuotaBook, QuotaExceeded

__all__ = [
    "API_BASE_IMAGE",
    "API_LIST_IMAGES",
    "API_LIST_PROJECTS",
    "API_NAMES",
    "API_POD_IDENTITY",
    "API_TOKENS",
    "HSS_SIMULATOR",
    "HssSimulator",
    "build_app",
]

API_LIST_IMAGES = "ListRegistryImages"
API_BASE_IMAGE = "ListImageBasicImage"
API_LIST_PROJECTS = "KeystoneListProjects"
API_TOKENS = "KeystoneCreateUserTokenByPassword"
API_POD_IDENTITY = "PodIdentityCredentials"
API_NAMES = (API_LIST_IMAGES, API_BASE_IMAGE, API_LIST_PROJECTS, API_TOKENS, API_POD_IDENTITY)
_RATE_LIMITED = (API_LIST_IMAGES, API_BASE_IMAGE)

_LIST_IMAGE_TYPES = ("private_image", "shared_image", "instance_image", "harbor", "jfrog")
_BASIC_IMAGE_TYPES = ("private_image", "shared_image", "instance_image", "cicd", "harbor")
_SCAN_STATUSES = ("unscan", "success", "scanning", "failed", "download_failed", "image_oversized", "waiting_for_scan")
_REQUEST_ID = web.RequestKey("request_id", str)

_FAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("HSS.0001", "Invalid parameter."),
    403: ("HSS.0013", "Insufficient permissions."),
    404: ("HSS.0011", "The requested resource was not found."),
    500: ("SYS.0500", "Internal server error."),
    502: ("APIGW.0202", "Backend unavailable."),
    503: ("APIGW.0202", "Backend unavailable."),
    504: ("APIGW.0203", "Backend timeout."),
}


class HssSimulator:
    """State of one HSS + IAM + Pod Identity simulator: identities, and the quota windows."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.identities = HssIdentities(state)
        self._windows = QuotaBook(clock=state.clock)

    # -- the pipeline every API call goes through

    async def serve(
        self,
        request: web.Request,
        api: str,
        handler: Callable[[web.Request, Caller | None, bytes], Awaitable[web.StreamResponse]],
        *,
        authenticate: bool = True,
    ) -> web.StreamResponse:
        self.state.faults.count(api)
        body = await request.read()
        try:
            fault = self.state.faults.take(api)
            if fault is not None:
                response = await self._suffer(request, api, fault)
                if response is not None:
                    return response
            caller = self.identities.authenticate(request, body) if authenticate else None
            if caller is not None and api in _RATE_LIMITED:
                await self._check_rate(caller, api)
            return await handler(request, caller, body)
        except Rejected as rejected:
            return error_response(request, rejected)

    async def _suffer(self, request: web.Request, api: str, fault: Fault) -> web.StreamResponse | None:
        if fault.kind in ("latency", "timeout", "malformed", "answer"):
            return await suffer_common_fault(request, fault)
        if fault.kind == "error":
            status = fault.status or 500
            code, message = _FAULT_ERRORS.get(status, (f"SYS.{status:04d}", "Error."))
            raise Rejected(status, code, message)
        if fault.kind == "throttle":
            raise self._throttled(1, 60.0, fault.retry_after if fault.retry_after is not None else 60.0)
        if fault.kind == "auth":
            raise Rejected(401, "APIGW.0301", "Incorrect IAM authentication information: verify aksk signature fail")
        return None

    async def _check_rate(self, caller: Caller, api: str) -> None:
        rate = self.state.hss_rate
        if rate is None:
            return
        limiter = self._windows.limiter((caller.user, api), rate)
        try:
            # A free slot is taken at once; none: reject, never wait.
            await limiter.acquire(max_wait=0)
        except QuotaExceeded as exc:
            raise self._throttled(rate.calls, rate.period, exc.wait) from None

    @staticmethod
    def _throttled(limit: int, period: float, wait: float) -> Rejected:
        window = "1 minute" if period == 60.0 else f"{period:g} seconds"
        return Rejected(
            429,
            "APIGW.0308",
            f"The throttling threshold has been reached: policy user over ratelimit,limit:{limit},time:{window}",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )

    # -- HSS

    def _own_project(self, request: web.Request, caller: Caller | None) -> None:
        if caller is not None and request.match_info["project_id"] != caller.project_id:
            raise Rejected(400, "HSS.0010", "Access denied: the project in the URL is not the caller's project.")

    async def list_registry_images(self, request: web.Request, caller: Caller | None, body: bytes) -> web.Response:
        self._own_project(request, caller)
        query = request.query
        offset = _int_param(query, "offset", 0, 0, 2_000_000)
        limit = _int_param(query, "limit", 10, 1, 200)
        filters: dict[str, str] = {}
        for name, longest in (("namespace", 128), ("image_name", 128), ("image_version", 64)):
            value = query.get(name)
            if value is not None:
                if not 1 <= len(value) <= longest:
                    raise Rejected(400, "HSS.0001", f"Invalid parameter: {name}.")
                filters[name] = value
        image_type = query.get("image_type")
        if image_type is not None and image_type not in _LIST_IMAGE_TYPES:
            raise Rejected(400, "HSS.0001", "Invalid parameter: image_type.")
        scan_status = query.get("scan_status")
        if scan_status is not None and scan_status not in _SCAN_STATUSES:
            raise Rejected(400, "HSS.0001", "Invalid parameter: scan_status.")

        rows = []
        for index, image in enumerate(self._images()):
            row = _registry_row(index, image)
            if any(value not in row[name] for name, value in filters.items()):
                continue
            if image_type is not None and row["image_type"] != image_type:
                continue
            if scan_status is not None and row["scan_status"] != scan_status:
                continue
            rows.append(row)
        return _json(request, {"total_num": len(rows), "data_list": rows[offset : offset + limit]})

    async def list_image_basic_image(self, request: web.Request, caller: Caller | None, body: bytes) -> web.Response:
        self._own_project(request, caller)
        if not request.headers.get("region"):
            raise Rejected(400, "HSS.0001", "Invalid parameter: the region header is required.")
        query = request.query
        image_type = query.get("image_type")
        if image_type not in _BASIC_IMAGE_TYPES:
            raise Rejected(400, "HSS.0001", "Invalid parameter: image_type.")
        offset = _int_param(query, "offset", 0, 0, 2_000_000)
        limit = _int_param(query, "limit", 10, 1, 200)
        image_id = request.match_info["image_id"]
        found = None
        for image in self._images():
            hss = image.huawei
            assert hss is not None
            if hss.image_id != image_id or hss.image_type != image_type:
                continue
            if image_type != "cicd" and (
                query.get("namespace") != image.reference.namespace
                or query.get("image_name") != image.reference.short_name
                or query.get("image_version") != image.reference.tag
            ):
                continue
            found = image
            break
        entries: list[dict[str, str]] = []
        if found is not None and found.huawei is not None and found.huawei.base_image is not None:
            base = found.huawei.base_image
            if query.get("os_name") in (None, base.os_name):
                entries.append(
                    {"os_name": base.os_name, "os_version": base.os_version, "layer_digest": base.layer_digest}
                )
        return _json(request, {"total_num": len(entries), "data_list": entries[offset : offset + limit]})

    def _images(self) -> list[CatalogueImage]:
        return self.state.catalogue.huawei_images()

    # -- IAM

    async def create_token(self, request: web.Request, caller: Caller | None, body: bytes) -> web.Response:
        try:
            data = json.loads(body)
            identity = data["auth"]["identity"]
            if "password" not in identity["methods"]:
                raise KeyError("methods")
            user = identity["password"]["user"]
            name, password, domain = str(user["name"]), str(user["password"]), str(user["domain"]["name"])
            project = (data["auth"].get("scope") or {}).get("project") or {}
        except (ValueError, KeyError, TypeError):
            raise Rejected(400, "IAM.0001", "The request body is invalid.") from None
        project_name = project.get("name") if isinstance(project.get("name"), str) else None
        project_id = project.get("id") if isinstance(project.get("id"), str) else None
        value, token = self.identities.issue_token(domain, name, password, project_name, project_id)
        now = self.state.clock()
        answer = {
            "token": {
                "methods": ["password"],
                "expires_at": iso_time(token.expires_at),
                "issued_at": iso_time(now),
                "user": {
                    "name": name,
                    "id": uuid.uuid5(uuid.NAMESPACE_URL, token.user).hex,
                    "domain": {"name": domain},
                },
                "project": {"id": token.project_id, "name": token.project_name, "domain": {"name": domain}},
                "roles": [{"name": "hss_readonly", "id": "0"}],
            }
        }
        response = _json(request, answer, status=201)
        response.headers["X-Subject-Token"] = value
        return response

    async def list_projects(self, request: web.Request, caller: Caller | None, body: bytes) -> web.Response:
        assert caller is not None
        name = request.query.get("name", "cn-north-4")
        project = {
            "id": caller.project_id,
            "name": name,
            "domain_id": "cloudsim0domain0000000000000000",
            "parent_id": "cloudsim0domain0000000000000000",
            "is_domain": False,
            "enabled": True,
            "description": "",
            "links": {"self": f"{request.url.origin()}/v3/projects/{caller.project_id}"},
        }
        return _json(
            request, {"projects": [project], "links": {"self": str(request.url), "next": None, "previous": None}}
        )

    # -- CCE Pod Identity

    async def pod_identity(self, request: web.Request, caller: Caller | None, body: bytes) -> web.Response:
        token = request.headers.get("Authorization", "").strip()
        if not token or token.lower().startswith("invalid"):
            raise Rejected(401, "CCE.01400001", "Invalid service account token.")
        ak, sk, security_token, expires_at = self.identities.mint()
        return _json(
            request,
            {
                "assumedAgency": {"agencyName": "cloudsim-image-gate", "agencyId": "cloudsim-agency"},
                "audience": "",
                "credentials": {
                    "accessKeyId": ak,
                    "secretAccessKey": sk,
                    "securityToken": security_token,
                    "expiration": iso_time(expires_at),
                },
                "podIdentityAssociationId": "cloudsim-association",
                "subject": {"namespace": "image-gate", "serviceAccount": "image-gate"},
            },
        )

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        return _json(request, {"revoked": self.identities.revoke_tokens()})


def build_app(state: SimState) -> web.Application:
    """The HSS + IAM + Pod Identity simulator as an aiohttp application (``/_sim`` routes are added by the runner)."""
    simulator = HssSimulator(state)
    app = web.Application(middlewares=[_request_ids])
    app[HSS_SIMULATOR] = simulator

    def route(api: str, handler: Any, *, authenticate: bool = True) -> Callable[[web.Request], Awaitable[Any]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            return await simulator.serve(request, api, handler, authenticate=authenticate)

        return serve

    app.router.add_get(
        "/v5/{project_id}/image/registries/images", route(API_LIST_IMAGES, simulator.list_registry_images)
    )
    app.router.add_get(
        "/v5/{project_id}/image/{image_id}/basic-image", route(API_BASE_IMAGE, simulator.list_image_basic_image)
    )
    app.router.add_post("/v3/auth/tokens", route(API_TOKENS, simulator.create_token, authenticate=False))
    app.router.add_get("/v3/projects", route(API_LIST_PROJECTS, simulator.list_projects))
    app.router.add_post(
        "/pod-identity/credentials", route(API_POD_IDENTITY, simulator.pod_identity, authenticate=False)
    )
    app.router.add_delete("/_sim/hss/iam/tokens", simulator.revoke_tokens)
    return app


HSS_SIMULATOR = web.AppKey("hss_simulator", HssSimulator)


@web.middleware
async def _request_ids(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An ``X-Request-Id`` on every answer, and APIG's JSON for unknown routes."""
    request_id = uuid.uuid4().hex
    request[_REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = error_response(
            request, Rejected(404, "APIGW.0101", "The API does not exist or has not been published in the environment.")
        )
    except web.HTTPMethodNotAllowed:
        response = error_response(request, Rejected(405, "APIGW.0101", "The method is not allowed for this API."))
    response.headers["X-Request-Id"] = request_id
    return response


def error_response(request: web.Request, rejected: Rejected) -> web.Response:
    request_id = request.get(_REQUEST_ID, uuid.uuid4().hex)
    body: dict[str, Any]
    if request.path.startswith("/v3/"):  # Keystone's error shape, with the code IAM adds
        body = {"error": {"code": rejected.status, "message": rejected.message, "title": rejected.code}}
        body["error_code"], body["error_msg"] = rejected.code, rejected.message
    else:
        body = {"error_code": rejected.code, "error_msg": rejected.message, "request_id": request_id}
    return web.json_response(body, status=rejected.status, headers=rejected.headers)


def _json(request: web.Request, data: Mapping[str, Any], *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _int_param(query: Mapping[str, str], name: str, default: int, lowest: int, highest: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise Rejected(400, "HSS.0001", f"Invalid parameter: {name}.") from None
    if not lowest <= value <= highest:
        raise Rejected(400, "HSS.0001", f"Invalid parameter: {name} must be within {lowest}..{highest}.")
    return value


def _registry_row(index: int, image: CatalogueImage) -> dict[str, Any]:
    hss = image.huawei
    assert hss is not None
    reference = image.reference
    digest = image.digest if index % 2 == 0 else image.digest.removeprefix("sha256:")
    scanned = hss.scan_status == "success"
    return {
        "id": index + 1,
        "namespace": reference.namespace,
        "image_name": reference.short_name,
        "image_id": hss.image_id,
        "image_digest": digest,
        "image_version": reference.tag or "",
        "image_type": hss.image_type,
        "registry_id": "cloudsim-swr",
        "registry_name": reference.registry,
        "registry_type": {
            "private_image": "SwrPrivate",
            "shared_image": "SwrShared",
            "instance_image": "SwrEnterprise",
        }.get(hss.image_type, "Other"),
        "latest_version": False,
        "scan_status": hss.scan_status,
        "scan_failed_desc": "",
        "scan_failed_code": "",
        "image_size": 0,
        "latest_update_time": 1_735_689_600_000,
        "latest_scan_time": 1_735_689_600_000 if scanned else 0,
        "latest_sync_time": 1_735_689_600_000,
        "vul_num": 0,
        "unsafe_setting_num": 0,
        "malicious_file_num": 0,
        "domain_name": "",
        "shared_status": "",
        "scannable": True,
        "is_multiple_arch": False,
        "instance_name": "",
        "instance_id": "",
        "instance_url": "",
        "severity_level": "Security" if scanned else "",
        "association_images": [],
    }
