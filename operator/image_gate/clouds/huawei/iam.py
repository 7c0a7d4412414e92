"""
IAM: endpoints, and token authentication for users who cannot use AK/SK.

`IamTokenAuth` gets a project-scoped token with an IAM user's password
(``POST /v3/auth/tokens``, "password" method), sends it as ``X-Auth-Token``,
keeps it until an hour before it expires (tokens live 24 h), and when the
service answers 401 anyway (the token was revoked: password or permission
change) fetches a new one and retries the request once.

A refused password is not asked again every few seconds: IAM locks a user
out after a number of failed logins, and every replica logs in once per
region. Logins back off exponentially, from `LOGIN_RETRY_FIRST` doubling to
`LOGIN_RETRY_MAX` (jittered, so replicas spread), start again from the first
step after a success, and say so: one WARNING per step, and the lookup's
outcome reads "IAM refused the password; next login attempt in N s".

A token is scoped to one project, so one is kept per region: the region of
each request travels in the request's extensions (`REGION_EXTENSION`), set by
`HssClient`. Configured from ``HUAWEICLOUD_IAM_USERNAME``,
``HUAWEICLOUD_IAM_PASSWORD`` and ``HUAWEICLOUD_IAM_DOMAIN`` (the account
name); Huawei recommends AK/SK over tokens, and so do we.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from image_gate.clouds._common import Refresher, TlsVerify, WallClock, json_object, tls_verify
from image_gate.clouds.huawei._logs import install_redaction
from image_gate.clouds.huawei.credentials import CredentialsError, CredentialsUnavailable, parse_expiry

__all__ = [
    "ENV_IAM_DOMAIN",
    "ENV_IAM_ENDPOINT",
    "ENV_IAM_PASSWORD",
    "ENV_IAM_USERNAME",
    "LOGIN_RETRY_FIRST",
    "LOGIN_RETRY_MAX",
    "REGION_EXTENSION",
    "TOKEN_REFRESH_BEFORE",
    "IamPassword",
    "IamToken",
    "IamTokenAuth",
    "PasswordRefused",
    "iam_endpoint",
]

ENV_IAM_USERNAME = "HUAWEICLOUD_IAM_USERNAME"
ENV_IAM_PASSWORD = "HUAWEICLOUD_IAM_PASSWORD"  # noqa: S105 (a variable name)
ENV_IAM_DOMAIN = "HUAWEICLOUD_IAM_DOMAIN"
ENV_IAM_ENDPOINT = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
"""The SDK's override of the IAM endpoint; read by the settings layer and passed as ``iam_endpoint``."""

REGION_EXTENSION = "image_gate.huawei.region"
"""``httpx.Request.extensions`` key naming the region a request is for."""

TOKEN_REFRESH_BEFORE = 3600.0
"""Fetch a new token when less than an hour of its 24 h remains."""

LOGIN_RETRY_FIRST = 5.0
"""Seconds before the first new login after IAM refused the password (or failed); doubled each time."""

LOGIN_RETRY_MAX = 600.0
"""The longest wait between logins with a refused password: 10 minutes, 6 logins an hour."""

_LOGIN_JITTER = 0.2
"""Each wait is its step times 1 ± this, at random: replicas started together do not log in together."""

_log = logging.getLogger(__name__)

_REGION_IN_HOST = re.compile(r"^[a-z]+\.(?P<region>[a-z]{2}-[a-z]+-\d+)\.myhuaweicloud\.(?:com|eu)$")


def iam_endpoint(region: str) -> str:
    """The IAM endpoint of a region: ``https://iam.{region}.myhuaweicloud.com`` (``.eu`` for eu-west-101)."""
    domain = "myhuaweicloud.eu" if region == "eu-west-101" else "myhuaweicloud.com"
    return f"https://iam.{region}.{domain}"


class PasswordRefused(CredentialsError):
    """IAM answered a login with a 4xx (wrong password, unknown user, locked out): it counts towards lock-out."""


@dataclass(frozen=True, slots=True, repr=False)
class IamPassword:
    """An IAM user's name and password, and the account (domain) it belongs to."""

    username: str
    password: str
    domain: str

    def __post_init__(self) -> None:
        if not self.username or not self.password or not self.domain:
            raise CredentialsError("IAM password authentication needs a user name, a password and a domain")

    @property
    def fingerprint(self) -> str:
        """A non-secret name of the user, for quota keys and logs."""
        return "iam-" + hashlib.sha256(f"{self.domain}/{self.username}".encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"IamPassword(username={self.username!r}, domain={self.domain!r}, password=<hidden>)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IamPassword | None:
        """From ``HUAWEICLOUD_IAM_*``: None when none is set, `CredentialsError` when some are missing."""
        env = os.environ if environ is None else environ
        names = (ENV_IAM_USERNAME, ENV_IAM_PASSWORD, ENV_IAM_DOMAIN)
        values = [env.get(name, "").strip() for name in names]
        if not any(values):
            return None
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        if missing:
            raise CredentialsError(f"IAM password authentication also needs {', '.join(missing)}")
        return cls(username=values[0], password=values[1], domain=values[2])


@dataclass(frozen=True, slots=True, repr=False)
class IamToken:
    value: str
    expires_at: float
    project_id: str | None = None

    def __repr__(self) -> str:
        return f"IamToken(value=<hidden>, expires_at={self.expires_at:.0f}, project_id={self.project_id!r})"

    __str__ = __repr__


class IamTokenAuth(httpx.Auth):
    """``X-Auth-Token`` authentication with a cached, renewed, project-scoped IAM token (async clients only)."""

    def __init__(
        self,
        password: IamPassword,
        *,
        iam_endpoint: str | None = None,
        verify: TlsVerify = True,
        clock: WallClock = time.time,
        refresh_before: float = TOKEN_REFRESH_BEFORE,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        login_retry_first: float = LOGIN_RETRY_FIRST,
        login_retry_max: float = LOGIN_RETRY_MAX,
        rng: Callable[[], float] = random.random,
    ) -> None:
        install_redaction()
        self.password = password
        self._login_retry_first = login_retry_first
        self._login_retry_max = login_retry_max
        self._rng = rng
        self._endpoint = iam_endpoint.rstrip("/") if iam_endpoint else None
        self._clock = clock
        self._refresh_before = refresh_before
        self._http = httpx.AsyncClient(verify=tls_verify(verify), timeout=timeout, transport=transport)
        self._tokens: dict[str, Refresher[IamToken]] = {}

    def __repr__(self) -> str:
        return f"IamTokenAuth({self.password!r})"

    @property
    def fingerprint(self) -> str:
        return self.password.fingerprint

    def endpoint(self, region: str) -> str:
        return self._endpoint or iam_endpoint(region)

    def refreshes(self, region: str) -> int:
        """How many tokens were requested for ``region``."""
        refresher = self._tokens.get(region)
        return refresher.refreshes if refresher else 0

    async def token(self, region: str) -> IamToken:
        """A token for the project named ``region``: cached, renewed an hour before expiry."""
        refresher = self._tokens.get(region)
        if refresher is None:

            async def fetch() -> tuple[IamToken, float | None]:
                token = await self._fetch(region)
                return token, token.expires_at

            refresher = self._tokens[region] = Refresher(
                fetch,
                clock=self._clock,
                refresh_before=self._refresh_before,
                failure_backoff=self._login_retry_first,
                backoff=lambda failures, failure: self._login_backoff(region, failures, failure),
                name="IAM token",
            )
        try:
            return await refresher.get()
        except PasswordRefused as exc:
            wait = refresher.retry_in()
            raise PasswordRefused(
                f"IAM refused the password; next login attempt in {wait:.0f} s ({exc})",
                code=exc.code,
                request_id=exc.request_id,
            ) from None

    def _login_backoff(self, region: str, failures: int, failure: BaseException) -> float:
        """Seconds until the next login after ``failures`` failed in a row, the last being ``failure``."""
        if not isinstance(failure, PasswordRefused):
            return self._login_retry_first  # IAM down or unreachable: no lock-out to fear, and it may pass soon
        step = self._login_retry_first * 2.0 ** min(failures - 1, 30)
        jitter = 1.0 + _LOGIN_JITTER * (2.0 * self._rng() - 1.0)
        wait = min(self._login_retry_max, step * jitter)
        _log.warning(
            "IAM refused the password of %s for %s (%d refusals in a row; %s); next login attempt in %.0f s",
            self.password.fingerprint,
            region,
            failures,
            failure,
            wait,
        )
        return wait

    async def aclose(self) -> None:
        for refresher in self._tokens.values():
            await refresher.aclose()
        await self._http.aclose()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("IamTokenAuth fetches tokens asynchronously: use it with an httpx.AsyncClient")
        yield request  # pragma: no cover  (makes this a generator)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        region = self._region_of(request)
        token = await self.token(region)
        request.headers["X-Auth-Token"] = token.value
        response = yield request
        if response.status_code != 401:
            return
        # The token was refused before its time (revoked, password or permission change): once more with a new one.
        refresher = self._tokens[region]
        if refresher.peek() is token:  # nobody has replaced it yet
            refresher.invalidate()
        token = await self.token(region)
        request.headers["X-Auth-Token"] = token.value
        yield request

    def _region_of(self, request: httpx.Request) -> str:
        region = request.extensions.get(REGION_EXTENSION)
        if isinstance(region, str) and region:
            return region
        match = _REGION_IN_HOST.match(request.url.host)
        if match:
            return match.group("region")
        raise CredentialsError(
            f"IamTokenAuth cannot tell the region of a request to {request.url.host}; "
            f"set extensions[{REGION_EXTENSION!r}]"
        )

    async def _fetch(self, region: str) -> IamToken:
        endpoint = self.endpoint(region)
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.password.username,
                            "password": self.password.password,
                            "domain": {"name": self.password.domain},
                        }
                    },
                },
                "scope": {"project": {"name": region}},
            }
        }
        who = f"IAM user {self.password.username!r} of {self.password.domain!r} at {endpoint}"
        try:
            response = await self._http.post(
                f"{endpoint}/v3/auth/tokens",
                params={"nocatalog": "true"},
                json=body,
                headers={"Content-Type": "application/json;charset=utf8"},
            )
        except httpx.TimeoutException:
            raise CredentialsUnavailable(f"no token for {who}: IAM did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CredentialsUnavailable(f"no token for {who}: cannot reach IAM ({type(exc).__name__})") from None
        data = json_object(response)
        if response.status_code not in (200, 201):
            detail = _error_text(data)
            status = response.status_code
            message = f"no token for {who}: IAM answered HTTP {status}{detail}"
            request_id = response.headers.get("X-Request-Id")
            if status == 429 or status >= 500:
                raise CredentialsUnavailable(message, request_id=request_id)  # it may pass; no lock-out either
            raise PasswordRefused(message, request_id=request_id)
        value = response.headers.get("X-Subject-Token", "")
        token = data.get("token") if data is not None else None
        if not value or not isinstance(token, dict):
            raise CredentialsError(f"no token for {who}: IAM's answer has no X-Subject-Token or token")
        try:
            expires_at = parse_expiry(token.get("expires_at"))
        except ValueError:
            raise CredentialsError(f"no token for {who}: IAM's answer has no valid token.expires_at") from None
        project = token.get("project")
        project_id = project.get("id") if isinstance(project, dict) else None
        return IamToken(
            value=value, expires_at=expires_at, project_id=project_id if isinstance(project_id, str) else None
        )


def _error_text(data: dict[str, Any] | None) -> str:
    if data is None:
        return ""
    error = data.get("error")
    if isinstance(error, dict):  # Keystone style: {"error": {"code": 401, "message": "...", "title": "..."}}
        data = error
    parts = [str(data[key]) for key in ("error_code", "code", "error_msg", "message") if data.get(key)]
    return (": " + " ".join(parts))[:240] if parts else ""
