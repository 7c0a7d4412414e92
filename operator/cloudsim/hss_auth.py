"""
Who is calling the HSS simulator: the API gateway's checks, and the identities IAM and Pod Identity hand out.

Signatures are verified as the gateway does: recomputed from the request as
received (raw path, raw query, the header values the request's own
``SignedHeaders`` names, the body), with the canonical forms of
`image_gate.clouds.huawei.signer`, so the official SDK (which signs every
header it sets, ``user-agent`` included) passes as well as our client. Every
refusal is 401 ``APIGW.0301`` "Incorrect IAM authentication information: ..."
with the reason; the reasons never repeat a secret.

Identities:

* the catalogue's Huawei credentials (with a fixed ``security_token`` for the
  ones that stand for temporary credentials);
* temporary credentials minted by the Pod Identity endpoint, which expire;
* IAM users (`DEFAULT_IAM_USERS`), whose tokens (``X-Auth-Token``) live 24 h
  and can be revoked all at once (``DELETE /_sim/hss/iam/tokens``).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from cloudsim.rejected import Rejected
from cloudsim.server import SimState
from image_gate.clouds.huawei.signer import (
    canonical_request,
    header_values,
    parse_authorization,
    parse_query,
    parse_sdk_date,
    signature,
    string_to_sign,
)

__all__ = [
    "DEFAULT_IAM_USERS",
    "POD_IDENTITY_LIFETIME",
    "TOKEN_LIFETIME",
    "Caller",
    "HssIdentities",
    "IamUser",
    "Rejected",
    "iso_time",
]

TOKEN_LIFETIME = 24 * 3600.0
POD_IDENTITY_LIFETIME = 3600.0


@dataclass(frozen=True, slots=True)
class IamUser:
    name: str
    password: str
    domain: str


DEFAULT_IAM_USERS = (IamUser(name="cloudsim-demo", password="cloudsim-demo-password", domain="cloudsim-demo"),)  # noqa: S106
"""The IAM users the simulator knows; their projects are those of the catalogue's first Huawei credential."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: ``user`` is what the quota counts by (the AK, or the IAM user)."""

    user: str
    project_id: str


@dataclass(frozen=True, slots=True)
class _Key:
    sk: str
    security_token: str | None
    project_id: str
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class _Token:
    user: str
    project_id: str
    project_name: str
    expires_at: float


def _unauthorized(reason: str) -> Rejected:
    return Rejected(401, "APIGW.0301", f"Incorrect IAM authentication information: {reason}")


def iso_time(epoch_seconds: float) -> str:
    """``2018-03-13T03:00:01.168000Z``: how IAM and Pod Identity write expiry times."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HssIdentities:
    """Credentials, minted keys and tokens the simulator accepts."""

    def __init__(self, state: SimState, users: tuple[IamUser, ...] = DEFAULT_IAM_USERS) -> None:
        self.state = state
        self.users = {(user.domain, user.name): user for user in users}
        self.minted: dict[str, _Key] = {}
        self.tokens: dict[str, _Token] = {}

    @property
    def default_project_id(self) -> str:
        credentials = self.state.catalogue.huawei_credentials
        return credentials[0].project_id if credentials else "0" * 32

    # -- the gateway's checks

    def authenticate(self, request: web.Request, body: bytes) -> Caller:
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            return self._by_token(token)
        header = request.headers.get("Authorization")
        if not header:
            raise _unauthorized("the request carries neither an Authorization nor an X-Auth-Token header")
        try:
            parsed = parse_authorization(header)
        except ValueError as exc:
            raise _unauthorized(f"ill-formed Authorization header: {exc}") from None
        signed = parsed.signed_headers
        for required in ("host", "x-sdk-date"):
            if required not in signed:
                raise _unauthorized(f"{required} must be among the SignedHeaders")
        date = request.headers.get("X-Sdk-Date", "")
        try:
            when = parse_sdk_date(date)
        except ValueError:
            raise _unauthorized("X-Sdk-Date is missing or not in the form YYYYMMDDTHHMMSSZ") from None
        if abs(self.state.clock() - when) > self.state.max_skew:
            raise _unauthorized(
                f"Signature expired: X-Sdk-Date is more than {self.state.max_skew / 60:g} minutes off the server time"
            )
        key = self._key(parsed.access_key)
        sent_token = request.headers.get("X-Security-Token")
        if key.security_token is not None:
            if sent_token is None or not hmac.compare_digest(sent_token.encode(), key.security_token.encode()):
                raise _unauthorized("the X-Security-Token does not belong to the access key")
            if "x-security-token" not in signed:
                raise _unauthorized("x-security-token must be among the SignedHeaders")
        elif sent_token is not None:
            raise _unauthorized("an X-Security-Token was sent with a permanent access key")
        if key.expires_at is not None and self.state.clock() >= key.expires_at:
            raise _unauthorized("the temporary access key has expired")

        values = header_values(request.raw_headers)
        missing = [name for name in signed if name not in values]
        if missing:
            raise _unauthorized(f"the signed header {missing[0]} is not in the request")
        raw_path, _, raw_query = request.raw_path.partition("?")
        canonical = canonical_request(request.method, raw_path, parse_query(raw_query), values, signed, body)
        expected = signature(key.sk, string_to_sign(canonical, date))
        if not hmac.compare_digest(expected.encode(), parsed.signature.encode()):
            raise _unauthorized("verify aksk signature fail: the signature does not match the request")
        return Caller(user=parsed.access_key, project_id=key.project_id)

    def _key(self, access_key: str) -> _Key:
        credential = self.state.catalogue.huawei_credential(access_key)
        if credential is not None:
            return _Key(credential.sk, credential.security_token, credential.project_id, None)
        minted = self.minted.get(access_key)
        if minted is not None:
            return minted
        raise _unauthorized("the access key does not exist")

    def _by_token(self, value: str) -> Caller:
        token = self.tokens.get(value)
        if token is None or self.state.clock() >= token.expires_at:
            raise _unauthorized("The token must be updated")
        return Caller(user=token.user, project_id=token.project_id)

    # -- issuing identities

    def issue_token(
        self, domain: str, name: str, password: str, project_name: str | None, project_id: str | None
    ) -> tuple[str, _Token]:
        more = (IamUser(*user) for user in self.state.iam_users)
        user = self.users.get((domain, name)) or next((u for u in more if (u.domain, u.name) == (domain, name)), None)
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise Rejected(401, "IAM.0004", "The username or password is wrong.")
        project = self.default_project_id
        if project_id is not None and project_id != project:
            raise Rejected(401, "IAM.0009", "The project does not exist or you have no access to it.")
        value = "MIIcloudsim" + secrets.token_urlsafe(48)
        token = _Token(
            user=f"iam:{domain}/{name}",
            project_id=project,
            project_name=project_name or "cn-north-4",
            expires_at=self.state.clock() + TOKEN_LIFETIME,
        )
        self.tokens[value] = token
        return value, token

    def revoke_tokens(self) -> int:
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def mint(self) -> tuple[str, str, str, float]:
        """New temporary credentials for a pod: AK, SK, security token, expiry."""
        ak = "CLOUDSIMPOD" + secrets.token_hex(6).upper()
        sk = secrets.token_urlsafe(30)
        token = "cloudsim-pod-" + secrets.token_urlsafe(60)
        expires_at = float(int(self.state.clock() + POD_IDENTITY_LIFETIME))
        self.minted[ak] = _Key(sk, token, self.default_project_id, expires_at)
        return ak, sk, token, expires_at
