"""
Alibaba Cloud credentials: where they come from, and keeping them out of sight.

`from_environment` follows the vendor's default chain (``credentials-python``
``DefaultCredentialsProvider``), as far as it applies to a pod:

1. ``ALIBABA_CLOUD_ACCESS_KEY_ID`` + ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, and
   ``ALIBABA_CLOUD_SECURITY_TOKEN`` when they are STS credentials: fixed.
2. RRSA (RAM Roles for Service Accounts on ACK), when all of
   ``ALIBABA_CLOUD_ROLE_ARN``, ``ALIBABA_CLOUD_OIDC_PROVIDER_ARN`` and
   ``ALIBABA_CLOUD_OIDC_TOKEN_FILE`` are set (ack-pod-identity-webhook injects
   them): the projected service-account token is exchanged for temporary
   credentials with STS ``AssumeRoleWithOIDC``, an anonymous call. Optional:
   ``ALIBABA_CLOUD_ROLE_SESSION_NAME``, ``ALIBABA_CLOUD_STS_REGION``,
   ``ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED`` (``sts-vpc.<region>.aliyuncs.com``),
   and ``ALIBABA_CLOUD_STS_ENDPOINT`` (a host or URL; the webhook >= 0.4.0
   injects it, and tests point it at cloudsim).

The token file is read again on every renewal, because the kubelet rotates it.
Credentials are renewed when less than 15 minutes of them remain (the SDK's
rule), once for all concurrent callers, in the background while the old ones
are still valid (see `image_gate.clouds._common.Refresher`).

Secrets never leave this module in text: ``repr`` and ``str`` of every object
here show at most the first characters of the AccessKey ID (the shared
`image_gate.clouds.credentials.mask`), and exception messages name variables
and files, never their values. `fingerprint` is what logs and quota keys use to
tell accounts apart. The errors are the shared `CredentialsError` and
`CredentialsUnavailable`, as for Huawei Cloud.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx

from image_gate.clouds._common import (
    Refresher,
    TlsVerify,
    WallClock,
    fingerprint,
    first_text,
    json_object,
    tls_verify,
)
from image_gate.clouds.credentials import (
    CredentialsError,
    CredentialsProvider,
    CredentialsUnavailable,
    RenewedCredentials,
    TokenAndExpiry,
    any_set,
    mask,
    read_token_file,
    require_both_halves,
)

__all__ = [
    "ENV_ACCESS_KEY_ID",
    "ENV_ACCESS_KEY_SECRET",
    "ENV_OIDC_PROVIDER_ARN",
    "ENV_OIDC_TOKEN_FILE",
    "ENV_ROLE_ARN",
    "ENV_ROLE_SESSION_NAME",
    "ENV_SECURITY_TOKEN",
    "ENV_STS_ENDPOINT",
    "ENV_STS_REGION",
    "ENV_VPC_ENDPOINT_ENABLED",
    "AliyunCredential",
    "AliyunCredentialsProvider",
    "CredentialsError",
    "CredentialsUnavailable",
    "RrsaCredentials",
    "StaticCredentials",
    "configured",
    "fingerprint",
    "from_environment",
    "sts_endpoint",
]

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name, not a secret
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105
ENV_ROLE_ARN = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"  # noqa: S105
ENV_ROLE_SESSION_NAME = "ALIBABA_CLOUD_ROLE_SESSION_NAME"
ENV_STS_REGION = "ALIBABA_CLOUD_STS_REGION"
ENV_VPC_ENDPOINT_ENABLED = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"
ENV_STS_ENDPOINT = "ALIBABA_CLOUD_STS_ENDPOINT"

STS_API_VERSION = "2015-04-01"
DEFAULT_DURATION_SECONDS = 3600
REFRESH_BEFORE_EXPIRY = 15 * 60.0

_log = logging.getLogger(__name__)


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment sets any Alibaba Cloud credentials, even half of them.

    Half a configuration counts: `from_environment` then says what is missing,
    rather than the cloud being silently switched off.
    """
    env = os.environ if environ is None else environ
    return any_set(env, (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ROLE_ARN, ENV_OIDC_TOKEN_FILE))


@dataclass(frozen=True, slots=True, repr=False)
class AliyunCredential(TokenAndExpiry):
    """An AccessKey pair, with the STS token and expiry when it is temporary."""

    access_key_id: str
    access_key_secret: str

    def __post_init__(self) -> None:
        require_both_halves(
            self.access_key_id,
            self.access_key_secret,
            "an Alibaba Cloud credential needs both an AccessKey ID and an AccessKey secret",
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_key_id)

    @property
    def is_sts(self) -> bool:
        return bool(self.security_token)

    def __repr__(self) -> str:
        text = f"AliyunCredential(access_key_id={mask(self.access_key_id)!r}, sts={self.is_sts}"
        if self.expires_at is not None:
            text += f", expires_at={_iso(self.expires_at)!r}"
        return text + ")"

    __str__ = __repr__


class AliyunCredentialsProvider(CredentialsProvider[AliyunCredential], Protocol):
    """Where a signer gets its credential from, once per request; it also names the account."""

    @property
    def fingerprint(self) -> str:
        """Stable across renewals: it keys quotas and names the identity in logs."""
        ...

    def invalidate(self) -> None:
        """The cloud refused the credential: renew it before the next use, if that is possible."""
        ...


class StaticCredentials:
    """A fixed credential: an AccessKey pair from the environment or a Secret, optionally with an STS token."""

    def __init__(self, credential: AliyunCredential, *, source: str = "explicit") -> None:
        self.credential = credential
        self.source = source

    @property
    def fingerprint(self) -> str:
        return self.credential.fingerprint

    async def credentials(self) -> AliyunCredential:
        return self.credential

    def invalidate(self) -> None:
        pass  # nothing to renew

    async def aclose(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"StaticCredentials({self.credential!r}, source={self.source!r})"

    __str__ = __repr__


@dataclass(repr=False, eq=False)
class RrsaCredentials(RenewedCredentials[AliyunCredential]):
    """Temporary credentials for a RAM role, in exchange for the pod's OIDC token (RRSA).

    The fingerprint is the role ARN's: the STS AccessKey ID changes with every
    renewal, and quotas belong to the account behind the role.
    """

    role_arn: str
    oidc_provider_arn: str
    token_file: Path
    sts_endpoint: str = "https://sts.aliyuncs.com"
    session_name: str | None = None
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    refresh_before: float = REFRESH_BEFORE_EXPIRY
    clock: WallClock = time.time
    verify: TlsVerify = True
    timeout: float = 10.0
    failure_backoff: float = 5.0
    transport: httpx.AsyncBaseTransport | None = None
    _refresher: Refresher[AliyunCredential] = field(init=False)
    _http: httpx.AsyncClient | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.duration_seconds < 900:
            raise ValueError("RRSA session duration must be at least 900 seconds")
        self.token_file = Path(self.token_file)
        self.sts_endpoint = _endpoint_url(self.sts_endpoint)
        self.session_name = self.session_name or f"image-gate-{int(self.clock())}"
        self._refresher = Refresher(
            self._assume_role,
            clock=self.clock,
            refresh_before=self.refresh_before,
            failure_backoff=self.failure_backoff,
            name="RRSA credentials",
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.role_arn)

    async def aclose(self) -> None:
        await self._refresher.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def __repr__(self) -> str:
        return (
            f"RrsaCredentials(role={self.role_arn!r}, token_file={str(self.token_file)!r}, "
            f"sts_endpoint={self.sts_endpoint!r}, fingerprint={self.fingerprint!r})"
        )

    __str__ = __repr__

    async def _assume_role(self) -> tuple[AliyunCredential, float | None]:
        token = read_token_file(self.token_file, f"the OIDC token file ({ENV_OIDC_TOKEN_FILE})")
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=tls_verify(self.verify), timeout=self.timeout, transport=self.transport
            )
        # The OIDC token travels in a form body, not the URL: httpx logs URLs at INFO.
        query = {
            "Action": "AssumeRoleWithOIDC",
            "Format": "JSON",
            "Version": STS_API_VERSION,
            "DurationSeconds": str(self.duration_seconds),
            "RoleArn": self.role_arn,
            "OIDCProviderArn": self.oidc_provider_arn,
            "RoleSessionName": self.session_name or "image-gate",
            "Timestamp": _iso(self.clock()),
        }
        try:
            response = await self._http.post(f"{self.sts_endpoint}/", params=query, data={"OIDCToken": token})
        except httpx.HTTPError as exc:
            raise CredentialsUnavailable(
                f"STS AssumeRoleWithOIDC at {self.sts_endpoint} failed: {type(exc).__name__}"
            ) from None
        body = json_object(response)
        request_id = first_text(body, "RequestId", "requestId")
        if response.status_code != 200:
            code = first_text(body, "Code", "code")
            message = (first_text(body, "Message", "message") or "").replace(token, "<token>")[:300]
            error = CredentialsUnavailable if response.status_code >= 500 else CredentialsError
            raise error(
                f"STS AssumeRoleWithOIDC refused role {self.role_arn} (HTTP {response.status_code}, "
                f"code {code}): {message}",
                code=code,
                request_id=request_id,
            )
        credential = _read_sts_credentials(body)
        if credential is None:
            raise CredentialsError(
                "STS AssumeRoleWithOIDC answered without the documented Credentials fields", request_id=request_id
            )
        _log.info(
            "renewed RRSA credentials for role %s (fingerprint %s); they expire at %s",
            self.role_arn,
            self.fingerprint,
            _iso(credential.expires_at) if credential.expires_at else "?",
        )
        return credential, credential.expires_at


def sts_endpoint(env: Mapping[str, str]) -> str:
    """The STS URL: ``ALIBABA_CLOUD_STS_ENDPOINT``, else ``sts[-vpc].<region>.aliyuncs.com``, else the global one."""
    explicit = env.get(ENV_STS_ENDPOINT, "").strip()
    if explicit:
        return _endpoint_url(explicit)
    prefix = "sts-vpc" if env.get(ENV_VPC_ENDPOINT_ENABLED, "").strip().lower() == "true" else "sts"
    region = env.get(ENV_STS_REGION, "").strip()
    return f"https://{prefix}.{region}.aliyuncs.com" if region else "https://sts.aliyuncs.com"


def from_environment(
    env: Mapping[str, str] | None = None,
    *,
    clock: WallClock = time.time,
    verify: TlsVerify = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AliyunCredentialsProvider:
    """The first source the environment configures, in the vendor's order; `CredentialsError` if none.

    A half-configured source (an AccessKey ID without its secret) is an error
    naming the missing variable, not a silent fall-through to the next source.
    ``verify`` and ``transport`` apply to the STS calls of RRSA.
    """
    env = os.environ if env is None else env

    def value(name: str) -> str:
        return env.get(name, "").strip()

    key_id, secret, token = value(ENV_ACCESS_KEY_ID), value(ENV_ACCESS_KEY_SECRET), value(ENV_SECURITY_TOKEN)
    if key_id or secret:
        if not (key_id and secret):
            missing = ENV_ACCESS_KEY_SECRET if key_id else ENV_ACCESS_KEY_ID
            raise CredentialsError(f"{missing} is not set, but the other half of the AccessKey pair is")
        source = "environment (STS token)" if token else "environment"
        return StaticCredentials(AliyunCredential(key_id, secret, security_token=token or None), source=source)

    rrsa = {name: value(name) for name in (ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE)}
    if all(rrsa.values()):
        return RrsaCredentials(
            role_arn=rrsa[ENV_ROLE_ARN],
            oidc_provider_arn=rrsa[ENV_OIDC_PROVIDER_ARN],
            token_file=Path(rrsa[ENV_OIDC_TOKEN_FILE]),
            sts_endpoint=sts_endpoint(env),
            session_name=value(ENV_ROLE_SESSION_NAME) or None,
            clock=clock,
            verify=verify,
            transport=transport,
        )
    if any(rrsa.values()):
        missing = ", ".join(name for name, text in rrsa.items() if not text)
        raise CredentialsError(f"RRSA is half configured: {missing} not set")
    raise CredentialsError(
        f"no Alibaba Cloud credentials: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} "
        f"(and {ENV_SECURITY_TOKEN} for STS), or use RRSA ({ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN}, "
        f"{ENV_OIDC_TOKEN_FILE})"
    )


def _endpoint_url(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_sts_credentials(body: Mapping[str, object] | None) -> AliyunCredential | None:
    data = body.get("Credentials") if body is not None else None
    if not isinstance(data, Mapping):
        return None
    key_id, secret, token, expiration = (
        data.get("AccessKeyId"),
        data.get("AccessKeySecret"),
        data.get("SecurityToken"),
        data.get("Expiration"),
    )
    if not (
        isinstance(key_id, str)
        and isinstance(secret, str)
        and isinstance(token, str)
        and isinstance(expiration, str)
        and key_id
        and secret
        and token
    ):
        return None
    try:
        expires = datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    return AliyunCredential(key_id, secret, security_token=token, expires_at=expires)
