"""Huawei credential sources: the environment chain, CCE Pod Identity and IAM tokens against a real local
server on 127.0.0.1, renewal on a fake clock, and masking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from image_gate.clouds import credentials as shared
from image_gate.clouds.credentials import mask
from image_gate.clouds.huawei import (
    CredentialsError,
    CredentialsUnavailable,
    HuaweiCredentials,
    HuaweiSigner,
    IamPassword,
    IamTokenAuth,
    PodIdentityCredentials,
    StaticCredentials,
    configured,
    configured_iam_endpoint,
    default_auth,
    default_credentials,
    env_credentials,
)
from image_gate.clouds.huawei._logs import redact
from image_gate.clouds.huawei.credentials import fingerprint, parse_expiry
from image_gate.clouds.huawei.iam import REGION_EXTENSION, IamToken
from image_gate.clouds.huawei.signer import format_sdk_date

START = 1_750_000_000.0
AK, SK, TOKEN = "QTWAOYTTINDUT2QVKYUC", "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", "security-token-value-0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def iso_z(epoch: float) -> str:
    text = format_sdk_date(epoch)  # 20250101T000000Z
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]}T{text[9:11]}:{text[11:13]}:{text[13:15]}.000000Z"


# -- the environment chain ----------------------------------------------------------------------------------

POD_ENV = {
    "HC_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/creds",
    "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/t",
}
IAM_ENV = {"HUAWEICLOUD_IAM_USERNAME": "u", "HUAWEICLOUD_IAM_PASSWORD": "p4ss-w0rd", "HUAWEICLOUD_IAM_DOMAIN": "acct"}
AKSK_ENV = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}


async def test_env_aksk_comes_first() -> None:
    auth = default_auth({**AKSK_ENV, **POD_ENV, **IAM_ENV})
    assert isinstance(auth, HuaweiSigner)
    assert isinstance(auth.provider, StaticCredentials)
    credentials = await auth.current()
    assert (credentials.ak, credentials.sk, credentials.source) == (AK, SK, "env")
    await auth.aclose()


async def test_pod_identity_comes_before_iam() -> None:
    auth = default_auth({**POD_ENV, **IAM_ENV})
    assert isinstance(auth, HuaweiSigner)
    assert isinstance(auth.provider, PodIdentityCredentials)
    assert auth.provider.uri == POD_ENV["HC_CONTAINER_CREDENTIALS_FULL_URI"]
    await auth.aclose()


async def test_iam_password_comes_last() -> None:
    auth = default_auth(IAM_ENV)
    assert isinstance(auth, IamTokenAuth)
    assert auth.password == IamPassword("u", "p4ss-w0rd", "acct")
    await auth.aclose()


def test_no_credentials_names_every_variable() -> None:
    assert default_credentials({}) is None
    with pytest.raises(CredentialsError) as error:
        default_auth({})
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HC_CONTAINER_CREDENTIALS_FULL_URI",
        "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "HUAWEICLOUD_IAM_USERNAME",
        "HUAWEICLOUD_IAM_PASSWORD",
        "HUAWEICLOUD_IAM_DOMAIN",
    ):
        assert name in str(error.value)


def test_env_credentials_read_token_and_project() -> None:
    credentials = env_credentials(
        {**AKSK_ENV, "HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN, "HUAWEICLOUD_SDK_PROJECT_ID": "p-1"}
    )
    assert credentials == HuaweiCredentials(ak=AK, sk=SK, security_token=TOKEN, project_id="p-1", source="env")
    assert env_credentials({"HUAWEICLOUD_SDK_AK": " ", "HUAWEICLOUD_SDK_SK": ""}) is None


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({"HUAWEICLOUD_SDK_AK": AK, **POD_ENV}, "HUAWEICLOUD_SDK_SK is not set"),  # half an AK/SK stops the search
        ({"HUAWEICLOUD_SDK_SK": SK}, "HUAWEICLOUD_SDK_AK is not set"),
        ({"HC_CONTAINER_CREDENTIALS_FULL_URI": "http://x"}, "only HC_CONTAINER_CREDENTIALS_FULL_URI is set"),
        ({"HUAWEICLOUD_IAM_USERNAME": "u", "HUAWEICLOUD_IAM_PASSWORD": "p"}, "also needs HUAWEICLOUD_IAM_DOMAIN"),
    ],
)
def test_half_configured_sources_are_errors(environ: dict[str, str], missing: str) -> None:
    with pytest.raises(CredentialsError, match=missing):
        default_auth(environ)


# -- a real local server for Pod Identity and IAM -------------------------------------------------------------


@dataclass
class Upstream:
    """What the local Pod Identity / IAM server saw, and how it should answer."""

    clock: FakeClock
    lifetime: float = 3600.0
    status: int = 200
    delay: float = 0.0
    body: str | None = None
    authorizations: list[str] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    url: str = ""

    async def pod_identity(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        self.bodies.append((request.content_type, await request.json()))
        await asyncio.sleep(self.delay)
        if self.body is not None:
            return web.Response(status=self.status, text=self.body)
        if self.status != 200:
            return web.json_response(
                {"error_code": "CCE.01", "error_msg": f"bad token {self.authorizations[-1]}"}, status=self.status
            )
        number = len(self.authorizations)
        return web.json_response(
            {
                "assumedAgency": {},
                "audience": "",
                "credentials": {
                    "accessKeyId": f"TEMPAK{number:04d}",
                    "secretAccessKey": f"temp-secret-{number}",
                    "securityToken": f"temp-token-{number}",
                    "expiration": iso_z(self.clock() + self.lifetime),
                },
                "podIdentityAssociationId": "",
                "subject": {"namespace": "ns", "serviceAccount": "sa"},
            }
        )

    async def tokens(self, request: web.Request) -> web.Response:
        self.bodies.append((request.query.get("nocatalog"), await request.json()))
        if self.status != 200:
            return web.json_response(
                {"error": {"code": 401, "message": "The username or password is wrong."}}, status=401
            )
        value = f"iam-token-{len(self.issued) + 1}"
        self.issued.append(value)
        self.valid_tokens.add(value)
        response = web.json_response(
            {
                "token": {
                    "expires_at": iso_z(self.clock() + 24 * 3600),
                    "project": {"id": "project-1", "name": "cn-north-4"},
                }
            },
            status=201,
        )
        response.headers["X-Subject-Token"] = value
        return response

    async def service(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Auth-Token") not in self.valid_tokens:
            return web.json_response({"error_code": "APIGW.0301", "error_msg": "The token must be updated"}, status=401)
        return web.json_response({"ok": True})


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream(clock=FakeClock())
    app = web.Application()
    app.router.add_post("/pod-identity", state.pod_identity)
    app.router.add_post("/v3/auth/tokens", state.tokens)
    app.router.add_get("/service", state.service)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    yield state
    await server.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("sa-token-1\n", encoding="utf-8")
    return path


def pod(upstream: Upstream, token_file: Path, **options: Any) -> PodIdentityCredentials:
    return PodIdentityCredentials(f"{upstream.url}/pod-identity", token_file, clock=upstream.clock, **options)


async def test_pod_identity_posts_the_token_file_and_reads_credentials(upstream: Upstream, token_file: Path) -> None:
    provider = pod(upstream, token_file, project_id="p-1")
    credentials = await provider.credentials()
    assert upstream.authorizations == ["sa-token-1"]
    assert upstream.bodies == [("application/json", {})]
    assert credentials == HuaweiCredentials(
        ak="TEMPAK0001",
        sk="temp-secret-1",
        security_token="temp-token-1",
        project_id="p-1",
        expires_at=START + 3600,
        source="pod identity",
    )
    assert await provider.credentials() is credentials  # cached
    assert provider.refreshes == 1
    await provider.aclose()


async def test_pod_identity_renews_with_less_than_40_minutes_left_rereading_the_token(
    upstream: Upstream, token_file: Path
) -> None:
    provider = pod(upstream, token_file)
    first = await provider.credentials()
    assert first.expires_at == START + 3600
    await asyncio.to_thread(token_file.write_text, "sa-token-2", encoding="utf-8")  # the kubelet rotated it

    upstream.clock.now = START + 3600 - 41 * 60  # 41 minutes left: keep
    assert await provider.credentials() is first
    assert provider.refreshes == 1

    upstream.clock.now = START + 3600 - 39 * 60  # 39 left: renew in the background, serve the valid ones meanwhile
    assert await provider.credentials() is first
    await provider.wait_idle()
    second = await provider.credentials()
    assert second.ak == "TEMPAK0002"
    assert upstream.authorizations == ["sa-token-1", "sa-token-2"]

    upstream.clock.now = (second.expires_at or 0) + 1  # expired: callers wait for new ones
    third = await provider.credentials()
    assert third.ak == "TEMPAK0003"
    await provider.aclose()


async def test_concurrent_renewals_collapse_into_one_call(upstream: Upstream, token_file: Path) -> None:
    upstream.delay = 0.2
    provider = pod(upstream, token_file)
    results = await asyncio.gather(*(provider.credentials() for _ in range(20)))
    assert len(upstream.authorizations) == 1
    assert all(result is results[0] for result in results)
    await provider.aclose()


async def test_a_failed_renewal_keeps_valid_credentials(upstream: Upstream, token_file: Path) -> None:
    provider = pod(upstream, token_file)
    first = await provider.credentials()
    upstream.status = 503
    upstream.clock.now = START + 3600 - 10 * 60
    assert await provider.credentials() is first
    await provider.wait_idle()
    assert await provider.credentials() is first  # still valid for 10 minutes
    await provider.aclose()


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (401, None, CredentialsError, "answered HTTP 401"),
        (503, None, CredentialsUnavailable, "answered HTTP 503"),
        (200, "<html>not json</html>", CredentialsError, "answered without credentials"),
        (200, json.dumps({"credentials": {"accessKeyId": "A"}}), CredentialsError, "without an AK/SK"),
        (
            200,
            json.dumps({"credentials": {"accessKeyId": "A", "secretAccessKey": "S", "expiration": "soon"}}),
            CredentialsError,
            "without a valid expiration",
        ),
    ],
)
async def test_pod_identity_failures(
    upstream: Upstream, token_file: Path, status: int, body: str | None, error: type[Exception], text: str
) -> None:
    upstream.status, upstream.body = status, body
    provider = pod(upstream, token_file)
    with pytest.raises(error, match=text) as raised:
        await provider.credentials()
    if status == 401:
        assert isinstance(raised.value, CredentialsError)
        assert not isinstance(raised.value, CredentialsUnavailable)
    assert "sa-token-1" not in str(raised.value)  # the server echoed the token: it is blanked
    await provider.aclose()


async def test_pod_identity_unreachable_or_no_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t", encoding="utf-8")
    unreachable = PodIdentityCredentials("http://127.0.0.1:9/creds", token_file, timeout=2.0)
    with pytest.raises(CredentialsUnavailable, match="cannot reach CCE Pod Identity"):
        await unreachable.credentials()
    await unreachable.aclose()
    missing = PodIdentityCredentials("http://127.0.0.1:9/creds", tmp_path / "absent")
    with pytest.raises(CredentialsError, match="cannot read the Pod Identity token file"):
        await missing.credentials()
    await missing.aclose()


# -- IAM tokens -------------------------------------------------------------------------------------------------


def iam(upstream: Upstream) -> IamTokenAuth:
    return IamTokenAuth(IamPassword("image-gate", "p4ss-w0rd", "acct"), iam_endpoint=upstream.url, clock=upstream.clock)


async def test_iam_token_is_requested_as_documented_and_cached(upstream: Upstream) -> None:
    auth = iam(upstream)
    token = await auth.token("cn-north-4")
    assert token == IamToken(value="iam-token-1", expires_at=START + 24 * 3600, project_id="project-1")
    nocatalog, body = upstream.bodies[0]
    assert nocatalog == "true"
    assert body == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "image-gate", "password": "p4ss-w0rd", "domain": {"name": "acct"}}},
            },
            "scope": {"project": {"name": "cn-north-4"}},
        }
    }
    upstream.clock.now = START + 22 * 3600  # two hours left: keep it
    assert await auth.token("cn-north-4") is token
    upstream.clock.now = START + 23.5 * 3600  # half an hour left: renew (in the background)
    await auth.token("cn-north-4")
    await asyncio.sleep(0.05)
    assert (await auth.token("cn-north-4")).value == "iam-token-2"
    assert auth.refreshes("cn-north-4") == 2
    await auth.aclose()


async def test_iam_token_refreshed_once_on_401(upstream: Upstream) -> None:
    auth = iam(upstream)
    async with httpx.AsyncClient(auth=auth) as client:
        first = await client.get(f"{upstream.url}/service", extensions={REGION_EXTENSION: "cn-north-4"})
        assert first.status_code == 200
        upstream.valid_tokens.clear()  # revoked: password changed
        second = await client.get(f"{upstream.url}/service", extensions={REGION_EXTENSION: "cn-north-4"})
        assert second.status_code == 200
        assert upstream.issued == ["iam-token-1", "iam-token-2"]
        upstream.valid_tokens.clear()
        upstream.status = 401  # ... and now IAM refuses too: the error surfaces, no loop
        with pytest.raises(CredentialsError, match="IAM answered HTTP 401: 401 The username or password is wrong"):
            await client.get(f"{upstream.url}/service", extensions={REGION_EXTENSION: "cn-north-4"})
    await auth.aclose()


# -- masking -----------------------------------------------------------------------------------------------------


async def test_nothing_secret_in_repr_or_str(token_file: Path) -> None:
    credentials = HuaweiCredentials(ak=AK, sk=SK, security_token=TOKEN, project_id="p-1", expires_at=START)
    password = IamPassword("image-gate", "p4ss-w0rd", "acct")
    token = IamToken(value="MIIsecrettokenvalue", expires_at=START)
    provider = PodIdentityCredentials("http://127.0.0.1:9/creds", token_file)
    auth = IamTokenAuth(password)
    texts = [
        repr(credentials),
        str(credentials),
        f"{credentials}",
        repr(StaticCredentials(credentials)),
        repr(HuaweiSigner(credentials)),
        repr(password),
        str(password),
        repr(token),
        repr(provider),
        repr(auth),
    ]
    joined = "\n".join(texts)
    for secret in (SK, TOKEN, AK, AK[:5], "p4ss-w0rd", "MIIsecrettokenvalue", "sa-token-1"):
        assert secret not in joined
    assert "QTWA****" in repr(credentials)  # the shared mask, as for Alibaba Cloud
    assert credentials.fingerprint in repr(credentials)
    await provider.aclose()
    await auth.aclose()


def test_mask_and_fingerprint() -> None:
    assert mask(AK) == "QTWA****"
    assert mask("AK") == "****"  # a short key shows nothing
    assert fingerprint(AK) == fingerprint(AK) != fingerprint(AK + "X")
    assert AK not in fingerprint(AK)
    assert fingerprint(AK).startswith("ak-")


def test_parse_expiry_forms() -> None:
    assert parse_expiry("2025-01-01T00:00:00.000000Z") == 1_735_689_600.0
    assert parse_expiry("2025-01-01T00:00:00Z") == 1_735_689_600.0
    assert parse_expiry("2025-01-01T08:00:00+08:00") == 1_735_689_600.0
    assert parse_expiry("2025-01-01T00:00:00") == 1_735_689_600.0  # no zone: UTC, not local time (the SDK's slip)


def test_httpcore_header_logs_are_redacted() -> None:
    line = (
        "receive_response_headers.complete return_value=(b'HTTP/1.1', 201, b'Created', "
        "[(b'Content-Type', b'application/json'), (b'X-Subject-Token', b'MIIsecret'), (b'X-Request-Id', b'abc')])"
    )
    assert redact(line) == line.replace("MIIsecret", "<redacted>")


# -- the shared vocabulary ---------------------------------------------------------------------------------------


def test_configured_counts_any_source_even_half_of_one() -> None:
    assert not configured({})
    assert not configured({"HUAWEICLOUD_SDK_AK": " "})
    assert configured({"HUAWEICLOUD_SDK_AK": AK})  # half: default_auth says what is missing
    assert configured({"HC_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds"})
    assert configured({"HUAWEICLOUD_IAM_USERNAME": "image-gate"})
    assert not configured({"ALIBABA_CLOUD_ACCESS_KEY_ID": "x"})
    assert configured_iam_endpoint({}) is None
    assert configured_iam_endpoint({"HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://iam.example "}) == "https://iam.example"


def test_the_errors_are_the_shared_ones() -> None:
    assert CredentialsError is shared.CredentialsError
    assert issubclass(CredentialsUnavailable, shared.CredentialsError)
    with pytest.raises(shared.CredentialsError):
        default_auth({"HUAWEICLOUD_SDK_AK": AK})
