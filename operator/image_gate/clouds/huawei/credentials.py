"""
Where Huawei Cloud AK/SK credentials come from, under the SDK's names.

`default_credentials` looks, in the official SDK's order (``auth/provider.py``):

1. The environment: ``HUAWEICLOUD_SDK_AK`` and ``HUAWEICLOUD_SDK_SK``, with
   ``HUAWEICLOUD_SDK_SECURITY_TOKEN`` for temporary credentials and
   ``HUAWEICLOUD_SDK_PROJECT_ID``.
2. CCE Pod Identity: ``HC_CONTAINER_CREDENTIALS_FULL_URI`` and
   ``HC_CONTAINER_AUTHORIZATION_TOKEN_FILE``, which CCE injects into pods
   whose ServiceAccount is bound to an IAM agency. The credentials are
   temporary; they are renewed when fewer than 40 minutes remain (the SDK's
   rule), once for all concurrent callers, and the token file is read afresh
   each time because the kubelet rotates it.

(The SDK's profile file and ECS metadata sources are not consulted: a pod
should not use its node's identity.)

Secrets never leave these objects by accident: ``repr``/``str`` show at most
the first four characters of the AK (the shared
`image_gate.clouds.credentials.mask`), and `HuaweiCredentials.fingerprint`
(a hash of the AK) is what quota keys and log lines carry. The errors and the
provider Protocol are the shared ones (`image_gate.clouds.credentials`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from image_gate.clouds import _common
from image_gate.clouds._common import Refresher, TlsVerify, WallClock, first_text, json_object, tls_verify
from image_gate.clouds.credentials import (
    CredentialsError,
    CredentialsProvider,
    CredentialsUnavailable,
    RenewedCredentials,
    TokenAndExpiry,
    mask,
    read_token_file,
    require_both_halves,
)

__all__ = [
    "ENV_AK",
    "ENV_PROJECT_ID",
    "ENV_SECURITY_TOKEN",
    "ENV_SK",
    "POD_IDENTITY_TOKEN_FILE_ENV",
    "POD_IDENTITY_URI_ENV",
    "REFRESH_BEFORE",
    "CredentialsError",
    "CredentialsUnavailable",
    "HuaweiCredentials",
    "HuaweiCredentialsProvider",
    "PodIdentityCredentials",
    "StaticCredentials",
    "default_credentials",
    "env_credentials",
    "fingerprint",
    "parse_expiry",
]

ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 (a variable name)
ENV_PROJECT_ID = "HUAWEICLOUD_SDK_PROJECT_ID"
POD_IDENTITY_URI_ENV = "HC_CONTAINER_CREDENTIALS_FULL_URI"
POD_IDENTITY_TOKEN_FILE_ENV = "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE"  # noqa: S105

REFRESH_BEFORE = 40 * 60.0
"""Renew temporary credentials when fewer seconds than this remain (the SDK's 40-minute threshold)."""


def fingerprint(access_key: str) -> str:
    """A stable, non-secret name for an AK: for quota keys, metrics and logs."""
    return "ak-" + _common.fingerprint(access_key)


@dataclass(frozen=True, slots=True, repr=False)
class HuaweiCredentials(TokenAndExpiry):
    """An AK/SK pair, with a security token when temporary."""

    ak: str
    sk: str
    project_id: str | None = None
    """The project the SDK would send as ``X-Project-Id`` (``HUAWEICLOUD_SDK_PROJECT_ID``)."""
    source: str = "static"
    """Where they came from, for messages: ``env``, ``pod identity``, ..."""

    def __post_init__(self) -> None:
        require_both_halves(self.ak, self.sk, "Huawei Cloud credentials need both an AK and an SK")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.ak)

    def __repr__(self) -> str:
        token = ", security_token=<hidden>" if self.security_token else ""
        project = f", project_id={self.project_id!r}" if self.project_id else ""
        expires = f", expires_at={self.expires_at:.0f}" if self.expires_at is not None else ""
        return (
            f"HuaweiCredentials(ak={mask(self.ak)!r}, sk=<hidden>{token}{project}{expires}, "
            f"source={self.source!r}, fingerprint={self.fingerprint!r})"
        )

    __str__ = __repr__


HuaweiCredentialsProvider = CredentialsProvider[HuaweiCredentials]
"""Hands out the AK/SK to sign the next request with (static, or renewed from CCE Pod Identity)."""


class StaticCredentials:
    """Credentials that never change (from the environment, or given in code)."""

    def __init__(self, credentials: HuaweiCredentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"StaticCredentials({self._credentials!r})"

    async def credentials(self) -> HuaweiCredentials:
        return self._credentials

    async def aclose(self) -> None:
        pass


def env_credentials(environ: Mapping[str, str] | None = None) -> HuaweiCredentials | None:
    """The ``HUAWEICLOUD_SDK_*`` credentials, None when no AK/SK is set; `CredentialsError` when half is."""
    env = os.environ if environ is None else environ
    ak, sk = env.get(ENV_AK, "").strip(), env.get(ENV_SK, "").strip()
    if not ak and not sk:
        return None
    if not ak or not sk:
        missing = ENV_AK if not ak else ENV_SK
        raise CredentialsError(f"{missing} is not set; set both {ENV_AK} and {ENV_SK}, or neither")
    return HuaweiCredentials(
        ak=ak,
        sk=sk,
        security_token=env.get(ENV_SECURITY_TOKEN, "").strip() or None,
        project_id=env.get(ENV_PROJECT_ID, "").strip() or None,
        source="env",
    )


def parse_expiry(value: object) -> float:
    """Seconds since the epoch for an expiry such as ``2025-01-01T00:00:00.000000Z`` (UTC when no zone)."""
    if not isinstance(value, str) or not value:
        raise ValueError("the expiry is not a timestamp")
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class PodIdentityCredentials(RenewedCredentials[HuaweiCredentials]):
    """Temporary credentials from CCE Pod Identity, renewed before they expire.

    ``POST <full URI>`` with ``Authorization: <contents of the token file>``
    and the body ``{}`` answers
    ``{"credentials": {"accessKeyId", "secretAccessKey", "securityToken", "expiration"}, ...}``
    (the SDK also accepts ``credential`` / ``access`` / ``secret`` / ``securitytoken`` /
    ``expires_at``, and so does this).
    """

    def __init__(
        self,
        uri: str,
        token_file: str | os.PathLike[str],
        *,
        project_id: str | None = None,
        verify: TlsVerify = True,
        clock: WallClock = time.time,
        refresh_before: float = REFRESH_BEFORE,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.uri = uri
        self.token_file = Path(token_file)
        self._project_id = project_id
        self._http = httpx.AsyncClient(verify=tls_verify(verify), timeout=timeout, transport=transport)
        self._refresher: Refresher[HuaweiCredentials] = Refresher(
            self._fetch, clock=clock, refresh_before=refresh_before, name="Pod Identity credentials"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> PodIdentityCredentials | None:
        """From ``HC_CONTAINER_*``; None when neither is set, `CredentialsError` when only one is."""
        env = os.environ if environ is None else environ
        uri, token_file = env.get(POD_IDENTITY_URI_ENV, "").strip(), env.get(POD_IDENTITY_TOKEN_FILE_ENV, "").strip()
        if not uri and not token_file:
            return None
        if not uri or not token_file:
            raise CredentialsError(
                f"CCE Pod Identity needs both {POD_IDENTITY_URI_ENV} and {POD_IDENTITY_TOKEN_FILE_ENV}; "
                f"only {POD_IDENTITY_URI_ENV if uri else POD_IDENTITY_TOKEN_FILE_ENV} is set"
            )
        options.setdefault("project_id", env.get(ENV_PROJECT_ID, "").strip() or None)
        return cls(uri, token_file, **options)

    def __repr__(self) -> str:
        return f"PodIdentityCredentials(uri={self.uri!r}, token_file={str(self.token_file)!r})"

    async def aclose(self) -> None:
        await self._refresher.aclose()
        await self._http.aclose()

    async def _fetch(self) -> tuple[HuaweiCredentials, float | None]:
        token = read_token_file(self.token_file, "the Pod Identity token file")
        try:
            response = await self._http.post(self.uri, headers={"Authorization": token}, json={})
        except httpx.TimeoutException:
            raise CredentialsUnavailable(f"CCE Pod Identity at {self.uri} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CredentialsUnavailable(
                f"cannot reach CCE Pod Identity at {self.uri} ({type(exc).__name__})"
            ) from None
        data = json_object(response)
        if response.status_code != 200:
            detail = ""
            if data is not None:
                code = first_text(data, "error_code", "errorCode", "code")
                message = first_text(data, "error_msg", "errorMsg", "message")
                detail = ": " + " ".join(part for part in (code, message) if part).replace(token, "<token>")[:200]
            error = CredentialsUnavailable if response.status_code >= 500 else CredentialsError
            raise error(f"CCE Pod Identity at {self.uri} answered HTTP {response.status_code}{detail}")
        body = data.get("credentials", data.get("credential", data)) if data is not None else None
        if not isinstance(body, Mapping):
            raise CredentialsError(f"CCE Pod Identity at {self.uri} answered without credentials")
        ak = first_text(body, "accessKeyId", "access", "access_key_id")
        sk = first_text(body, "secretAccessKey", "secret", "secret_access_key")
        security_token = first_text(body, "securityToken", "securitytoken", "security_token")
        if not ak or not sk:
            raise CredentialsError(f"CCE Pod Identity at {self.uri} answered without an AK/SK")
        try:
            expires_at = parse_expiry(body.get("expiration", body.get("expires_at")))
        except ValueError:
            raise CredentialsError(f"CCE Pod Identity at {self.uri} answered without a valid expiration") from None
        credentials = HuaweiCredentials(
            ak=ak,
            sk=sk,
            security_token=security_token,
            project_id=self._project_id,
            expires_at=expires_at,
            source="pod identity",
        )
        return credentials, expires_at


def default_credentials(
    environ: Mapping[str, str] | None = None,
    *,
    verify: TlsVerify = True,
    clock: WallClock = time.time,
) -> HuaweiCredentialsProvider | None:
    """The first source that is configured, in the SDK's order; None when there is none.

    ``verify`` applies to the Pod Identity endpoint (CCE serves it with its own CA).
    """
    env = os.environ if environ is None else environ
    static = env_credentials(env)
    if static is not None:
        return StaticCredentials(static)
    return PodIdentityCredentials.from_env(env, verify=verify, clock=clock)
