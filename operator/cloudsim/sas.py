"""
Alibaba Cloud Security Center (SAS 2018-12-03) and STS, simulated on the real wire format.

SAS, as the API gateway serves it (RPC style, ``ACS3-HMAC-SHA256``):

* ``POST /`` with ``x-acs-action: DescribeImageInstances`` or ``DescribeImage``
  and ``x-acs-version: 2018-12-03``; parameters in the query string.
* The signature is verified the way the gateway does: recomputed from the
  request itself, using the headers the request's own ``SignedHeaders`` names
  (so the official SDK, which signs every header it sets, passes as well as
  our client, which signs ``host`` and ``x-acs-*``). The canonical forms come
  from `image_gate.clouds.aliyun.signer`: one definition, used by both sides.
* Rejections, as JSON ``{"RequestId", "HostId", "Code", "Message", "Recommend"}``:
  unknown AccessKey ID (404 ``InvalidAccessKeyId.NotFound``), wrong signature
  (400 ``SignatureDoesNotMatch``), a missing signature part or an unsigned
  ``x-acs-*`` header (400 ``IncompleteSignature``), ``x-acs-date`` more than
  ``state.max_skew`` off ``state.clock()`` (400 ``InvalidTimeStamp.Expired``),
  a nonce seen before (400 ``SignatureNonceUsed``), STS credentials without
  their token or with another one (400 ``InvalidSecurityToken.MismatchWithAccessKey``)
  or past their expiry (400 ``InvalidSecurityToken.Expired``).
* ``state.sas_rate``, when set, limits calls per account and API; beyond it:
  400 ``Throttling.User`` with ``x-ratelimit-user-api: Limit:N,Remain:0,TimeLeft:<ms>,Reset:<epoch ms>``.
* ``DescribeImageInstances`` filters with ``Criteria`` (a JSON array of
  ``{"name", "value"}``) by *substring*, as loosely as SAS may: clients must
  match rows exactly themselves. ``DescribeImage`` answers
  ``{"Data": {"Digest": "<hex>"}}`` -- without ``sha256:``, as the documented
  example does -- and ``{"Data": {}}`` for a tag it does not know.

STS ``AssumeRoleWithOIDC`` (``GET`` or ``POST /?Action=AssumeRoleWithOIDC&...``,
anonymous; parameters in the query string or a form body) issues temporary
credentials (``STS.``-prefixed AccessKey ID, secret, security token,
``Expiration`` = ``state.clock()`` + ``DurationSeconds``) that SAS then
accepts with the matching ``x-acs-security-token``. The rule for OIDC tokens:

* ``RoleArn`` must look like ``acs:ram::<account>:role/<name>`` and
  ``OIDCProviderArn`` like ``acs:ram::<account>:oidc-provider/<name>``, same account;
* the token is accepted when it has 4 to 20,000 characters and does not start
  with ``invalid``; if it is a JWT with an ``exp`` claim, ``exp`` must be after
  ``state.clock()`` (else 400 ``AuthenticationFail.OIDCToken.Expired``).

Every call is counted in ``state.faults`` under its API name
(``DescribeImageInstances``, ``DescribeImage``, ``AssumeRoleWithOIDC``) and
suffers the next injected fault for that API, before authentication.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cloudsim.catalogue import CatalogueImage
from cloudsim.faults import Fault, suffer_common_fault
from cloudsim.rejected import Rejected
from cloudsim.server import SimState
from image_gate.clouds.aliyun.signer import (
    ALGORITHM,
    canonical_headers,
    canonical_query_string,
    canonical_request,
    query_pairs,
    sign_string,
    string_to_sign,
)
from image_gate.clouds.quota import QuotaBook, QuotaExceeded

__all__ = ["SAS_APIS", "STS_API", "SasSimulator", "build_app"]

SAS_VERSION = "2018-12-03"
SAS_APIS = ("DescribeImageInstances", "DescribeImage")
STS_API = "AssumeRoleWithOIDC"

_AUTHORIZATION = re.compile(
    r"^(?P<algorithm>\S+)\s+Credential=(?P<credential>[^,]*),\s*SignedHeaders=(?P<signed>[^,]*),\s*Signature=(?P<signature>\S*)$"
)
_ROLE_ARN = re.compile(r"^acs:ram::(?P<account>\d+):role/(?P<name>[\w.@+=,-]+)$", re.IGNORECASE)
_PROVIDER_ARN = re.compile(r"^acs:ram::(?P<account>\d+):oidc-provider/(?P<name>[\w.-]+)$", re.IGNORECASE)
_CRITERIA_FIELDS = {
    "repoNamespace": "RepoNamespace",
    "repoName": "RepoName",
    "regionId": "RegionId",
    "instanceId": "InstanceId",
    "repoId": "RepoId",
    "tag": "Tag",
    "imageId": "ImageId",
    "digest": "Digest",
    "registryType": "RegistryType",
}
_MAX_OIDC_TOKEN = 20_000


@dataclass(frozen=True, slots=True)
class _Issued:
    """Temporary credentials STS handed out."""

    secret: str
    token: str
    expires_at: float
    account: str


@dataclass(frozen=True, slots=True)
class _Caller:
    access_key_id: str
    account: str


class SasSimulator:
    """The state of one SAS + STS simulator: issued STS credentials, seen nonces, rate windows."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.issued: dict[str, _Issued] = {}
        self._nonces: dict[str, float] = {}
        self._rates = QuotaBook(clock=lambda: self.state.clock())  # tests may swap state.clock

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query = query_pairs(request.rel_url.raw_query_string)
        action = request.headers.get("x-acs-action")
        if action is None:
            params = dict(query)
            if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
                params.update(query_pairs(body.decode("utf-8", "replace")))
            action = params.get("Action")
            if action == STS_API:

                async def assume_role() -> web.StreamResponse:
                    return self._assume_role(params)

                return await self._serve(request, STS_API, assume_role)
            if action is None:
                return _error(
                    request, 400, "MissingParameter", "x-acs-action (or Action) is mandatory for this request."
                )
            return _error(
                request, 404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
            )
        if action not in SAS_APIS:
            return _error(
                request, 404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
            )
        if request.method != "POST":
            return _error(request, 400, "UnsupportedHTTPMethod", f"{action} is served on POST only.")

        async def serve() -> web.StreamResponse:
            if request.headers.get("x-acs-version") != SAS_VERSION:
                raise Rejected(400, "InvalidVersion", "Specified parameter Version is not valid.")
            caller = self._authenticate(request, query, body)
            await self._check_rate(caller, action)
            params = dict(query)
            if action == "DescribeImageInstances":
                return web.json_response(self._describe_image_instances(params))
            return web.json_response(self._describe_image(params))

        return await self._serve(request, action, serve)

    async def _serve(
        self, request: web.Request, api: str, serve: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.state.faults.count(api)
        fault = self.state.faults.take(api)
        try:
            if fault is not None:
                response = await self._suffer(request, api, fault)
                if response is not None:
                    return response
            return await serve()
        except Rejected as reject:
            return _error(request, reject.status, reject.code, reject.message, reject.headers)

    # -- faults

    async def _suffer(self, request: web.Request, api: str, fault: Fault) -> web.StreamResponse | None:
        if fault.kind in ("latency", "timeout", "malformed", "answer"):
            return await suffer_common_fault(request, fault)
        if fault.kind == "error":
            status = fault.status or 500
            code, message = _ERRORS.get(
                status, ("InternalError", "The request processing has failed due to some unknown error.")
            )
            return _error(request, status, code, message)
        if fault.kind == "throttle":
            wait = fault.retry_after if fault.retry_after is not None else 1.0
            return _error(
                request,
                fault.status or 400,
                "Throttling.User",
                "Request was denied due to user flow control.",
                _rate_headers(1, wait, self.state.clock()),
            )
        if fault.kind == "auth":
            return _error(
                request, 400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
            )
        return None

    # -- authentication

    def _authenticate(self, request: web.Request, query: list[tuple[str, str]], body: bytes) -> _Caller:
        match = _AUTHORIZATION.match(request.headers.get("Authorization", "").strip())
        if match is None or match["algorithm"] != ALGORITHM:
            raise Rejected(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        self._check_date(request.headers.get("x-acs-date"))
        nonce = request.headers.get("x-acs-signature-nonce", "")
        if not nonce:
            raise Rejected(400, "MissingSignatureNonce", "x-acs-signature-nonce is mandatory for this request.")
        if nonce in self._nonces:
            raise Rejected(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

        access_key_id = match["credential"]
        secret, token, account = self._secret_for(access_key_id)
        signed = [name for name in match["signed"].split(";") if name]
        if any(name != name.lower() for name in signed) or signed != sorted(set(signed)) or "host" not in signed:
            raise Rejected(400, "IncompleteSignature", "SignedHeaders must list host, lowercase and sorted.")
        unsigned = sorted({name.lower() for name in request.headers if name.lower().startswith("x-acs-")} - set(signed))
        if unsigned:
            raise Rejected(400, "IncompleteSignature", f"Header {unsigned[0]} is not in SignedHeaders.")
        if token is not None:
            sent = request.headers.get("x-acs-security-token")
            if sent is None or not hmac.compare_digest(sent, token):
                raise Rejected(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "The security token does not match the access key.",
                )

        pairs: list[tuple[str, str]] = []
        for name in signed:
            values = request.headers.getall(name, [])
            if not values:
                raise Rejected(400, "IncompleteSignature", f"Signed header {name} is missing.")
            pairs.extend((name, value) for value in values)
        block, signed_text = canonical_headers(pairs)
        payload = request.headers.get("x-acs-content-sha256") or hashlib.sha256(body).hexdigest()
        if payload != hashlib.sha256(body).hexdigest():
            raise Rejected(400, "ContentSHA256NotMatch", "x-acs-content-sha256 does not match the request body.")
        canonical = canonical_request(
            request.method, request.rel_url.raw_path, canonical_query_string(query), block, signed_text, payload
        )
        text = string_to_sign(canonical)
        if not hmac.compare_digest(sign_string(secret, text), match["signature"]):
            raise Rejected(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. server string to sign is:"
                + text.replace("\n", "\\n"),
            )

        now = self.state.clock()
        issued = self.issued.get(access_key_id)
        if issued is not None and now >= issued.expires_at:
            raise Rejected(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        self._remember_nonce(nonce, now)
        return _Caller(access_key_id=access_key_id, account=account)

    def _secret_for(self, access_key_id: str) -> tuple[str, str | None, str]:
        credential = self.state.catalogue.aliyun_credential(access_key_id)
        if credential is not None:
            return credential.access_key_secret, credential.security_token, access_key_id
        issued = self.issued.get(access_key_id)
        if issued is not None:
            return issued.secret, issued.token, issued.account
        raise Rejected(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")

    def _check_date(self, value: str | None) -> None:
        if not value:
            raise Rejected(400, "MissingParameter", "x-acs-date is mandatory for this request.")
        try:
            when = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise Rejected(
                400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            ) from None
        if abs(self.state.clock() - when) > self.state.max_skew:
            raise Rejected(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")

    def _remember_nonce(self, nonce: str, now: float) -> None:
        horizon = 2 * self.state.max_skew
        if len(self._nonces) > 10_000:
            self._nonces = {key: seen for key, seen in self._nonces.items() if now - seen < horizon}
        self._nonces[nonce] = now

    async def _check_rate(self, caller: _Caller, api: str) -> None:
        rate = self.state.sas_rate
        if rate is None:
            return
        limiter = self._rates.limiter((caller.account, api), rate)
        try:
            # A free slot is taken at once; none: reject, never wait.
            await limiter.acquire(max_wait=0)
        except QuotaExceeded as exc:
            raise Rejected(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
                _rate_headers(rate.calls, exc.wait, self.state.clock()),
            ) from None

    # -- SAS APIs

    def _rows(self) -> list[dict[str, Any]]:
        return [_row(image) for image in sorted(self.state.catalogue.aliyun_images(), key=lambda i: str(i.reference))]

    def _describe_image_instances(self, params: Mapping[str, str]) -> dict[str, Any]:
        criteria = _read_criteria(params.get("Criteria"))
        logical = (params.get("LogicalExp") or "AND").upper()
        if logical not in ("AND", "OR"):
            raise Rejected(400, "InvalidParameter", "Specified parameter LogicalExp is not valid.")
        page_size = _positive_int(params, "PageSize", 20)
        current = _positive_int(params, "CurrentPage", 1)

        def keep(row: Mapping[str, Any]) -> bool:
            if not criteria:
                return True
            hits = [value in str(row.get(field, "")) for field, value in criteria]
            return all(hits) if logical == "AND" else any(hits)

        rows = [row for row in self._rows() if keep(row)]
        page = rows[(current - 1) * page_size : current * page_size]
        return {
            "RequestId": _request_id(),
            "PageInfo": {"Count": len(page), "CurrentPage": current, "PageSize": page_size, "TotalCount": len(rows)},
            "ImageInstanceList": page,
        }

    def _describe_image(self, params: Mapping[str, str]) -> dict[str, Any]:
        wanted = {}
        for name in ("ImageRegionId", "ImageInstanceId", "ImageRepoId", "ImageTag"):
            value = params.get(name, "")
            if not value:
                raise Rejected(400, f"Missing{name}", f"{name} is mandatory for this action.")
            wanted[name] = value
        for image in self.state.catalogue.aliyun_images():
            acr = image.aliyun
            assert acr is not None
            if (acr.region, acr.instance_id, acr.repo_id, image.reference.tag) == (
                wanted["ImageRegionId"],
                wanted["ImageInstanceId"],
                wanted["ImageRepoId"],
                wanted["ImageTag"],
            ):
                return {"RequestId": _request_id(), "Data": {"Digest": _bare_digest(image.digest)}}
        return {"RequestId": _request_id(), "Data": {}}

    # -- STS

    def _assume_role(self, params: Mapping[str, str]) -> web.StreamResponse:
        for name in ("RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"):
            if not params.get(name):
                raise Rejected(400, f"Missing{name}", f"{name} is mandatory for this action.")
        role = _ROLE_ARN.match(params["RoleArn"])
        if role is None:
            raise Rejected(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
        provider = _PROVIDER_ARN.match(params["OIDCProviderArn"])
        if provider is None or provider["account"] != role["account"]:
            raise Rejected(400, "InvalidParameter.OIDCProviderArn", "The parameter OIDCProviderArn is wrongly formed.")
        try:
            duration = int(params.get("DurationSeconds") or 3600)
        except ValueError:
            duration = 0
        if not 900 <= duration <= 43_200:
            raise Rejected(400, "InvalidParameter.DurationSeconds", "The DurationSeconds is out of range (900-43200).")
        token = params["OIDCToken"]
        now = self.state.clock()
        claims = _check_oidc_token(token, now)

        access_key_id = "STS.NT" + secrets.token_hex(10)
        issued = _Issued(
            secret=secrets.token_urlsafe(30),
            token="CAIS" + secrets.token_urlsafe(150),
            expires_at=float(int(now) + duration),
            account=f"account:{role['account']}",
        )
        self.issued[access_key_id] = issued
        session = params["RoleSessionName"]
        return web.json_response(
            {
                "RequestId": _request_id(),
                "Credentials": {
                    "AccessKeyId": access_key_id,
                    "AccessKeySecret": issued.secret,
                    "SecurityToken": issued.token,
                    "Expiration": _iso(issued.expires_at),
                },
                "AssumedRoleUser": {
                    "AssumedRoleId": f"3{role['account'][-8:]}:{session}",
                    "Arn": f"acs:ram::{role['account']}:assumed-role/{role['name']}/{session}",
                },
                "OIDCTokenInfo": {
                    "Subject": str(claims.get("sub", "system:serviceaccount:unknown")),
                    "Issuer": str(claims.get("iss", "https://oidc-ack.cloudsim.local")),
                    "ClientIds": str(claims.get("aud", "sts.aliyuncs.com")),
                    "ExpirationTime": _iso(float(claims["exp"])) if isinstance(claims.get("exp"), int) else "",
                    "IssuanceTime": _iso(float(claims["iat"])) if isinstance(claims.get("iat"), int) else "",
                },
            }
        )


def build_app(state: SimState) -> web.Application:
    """The SAS + STS simulator as an aiohttp application (``/_sim`` routes are added by the runner)."""
    simulator = SasSimulator(state)
    app = web.Application()
    app[SIMULATOR] = simulator
    app.router.add_route("GET", "/", simulator.handle)
    app.router.add_route("POST", "/", simulator.handle)
    return app


SIMULATOR = web.AppKey("sas_simulator", SasSimulator)

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("InvalidParameter", "The specified parameter is not valid."),
    403: ("NoPermission", "caller has no permission"),
    404: ("InvalidAction.NotFound", "Specified api is not found, please check your url and method."),
    429: ("Throttling", "Request was denied due to request throttling."),
    500: ("ServerError", "ServerError"),
    502: ("ServiceUnavailable", "The request has failed due to a temporary failure of the server."),
    503: ("ServiceUnavailable", "The request has failed due to a temporary failure of the server."),
}


def _error(
    request: web.Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    request_id = _request_id()
    return web.json_response(
        {
            "RequestId": request_id,
            "HostId": request.host,
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Sas&requestId={request_id}",
        },
        status=status,
        headers=headers,
    )


def _rate_headers(limit: int, wait: float, now: float) -> dict[str, str]:
    left = max(1, round(wait * 1000))
    return {"x-ratelimit-user-api": f"Limit:{limit},Remain:0,TimeLeft:{left},Reset:{round(now * 1000) + left}"}


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bare_digest(digest: str) -> str:
    return digest.split(":", 1)[1] if digest.startswith("sha256:") else digest


def _row(image: CatalogueImage) -> dict[str, Any]:
    acr = image.aliyun
    assert acr is not None
    reference = image.reference
    uid = uuid.UUID(hashlib.sha256(f"uuid:{reference}".encode()).hexdigest()[:32])
    return {
        "AlarmCount": 0,
        "AlarmStatus": "NO",
        "Deployed": 0,
        "Digest": _bare_digest(image.digest),
        "Endpoints": "[]",
        "HcCount": 0,
        "HcStatus": "NO",
        "ImageCreate": "1700000000000",
        "ImageId": acr.image_id,
        "ImageSize": "0",
        "ImageUpdate": "1700000000000",
        "InstanceId": acr.instance_id,
        "LastScanTime": 1700000000000,
        "RegionId": acr.region,
        "RegistryType": "acr",
        "RepoId": acr.repo_id,
        "RepoName": reference.short_name,
        "RepoNamespace": reference.namespace,
        "RepoType": "private",
        "RiskStatus": "NO",
        "ScaProgress": 100,
        "ScaResult": "",
        "ScaStatus": "",
        "SourceBizTag": "",
        "Status": "NORMAL",
        "Tag": reference.tag or "",
        "Uuid": str(uid),
        "VulCount": 0,
        "VulStatus": "NO",
    }


def _read_criteria(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        raise Rejected(400, "InvalidParameter", "Specified parameter Criteria is not valid JSON.") from None
    if not isinstance(items, list):
        raise Rejected(400, "InvalidParameter", "Specified parameter Criteria must be a JSON array.")
    criteria = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
            raise Rejected(400, "InvalidParameter", "Each Criteria entry needs a name and a value.")
        field = _CRITERIA_FIELDS.get(item["name"])
        if field is None:
            raise Rejected(400, "InvalidParameter", f"Criteria name {item['name']} is not supported.")
        criteria.append((field, str(item["value"])))
    return criteria


def _positive_int(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise Rejected(400, "InvalidParameter", f"Specified parameter {name} is not valid.")
    return value


def _check_oidc_token(token: str, now: float) -> dict[str, Any]:
    """The token's claims when it passes cloudsim's rule (see the module docstring)."""
    if not 4 <= len(token) <= _MAX_OIDC_TOKEN:
        raise Rejected(400, "InvalidParameter.OIDCToken", "The OIDCToken length must be 4 to 20000 characters.")
    if token.lower().startswith("invalid"):
        raise Rejected(400, "AuthenticationFail.OIDCToken.Invalid", "The OIDC token is invalid.")
    claims = _jwt_claims(token)
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires <= now:
        raise Rejected(400, "AuthenticationFail.OIDCToken.Expired", "The OIDC token has expired.")
    return claims


def _jwt_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return payload if isinstance(payload, dict) else {}
