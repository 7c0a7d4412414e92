"""Alibaba Cloud credential sources: the env chain, RRSA against cloudsim's STS, and masking.

RRSA runs against cloudsim's STS (``AssumeRoleWithOIDC`` on the SAS simulator)
over real HTTP on 127.0.0.1, with one fake clock shared by the simulator and
the provider, so "45 minutes later" takes no time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from cloudsim.catalogue import Catalogue
from cloudsim.faults import Fault
from cloudsim.sas import SIMULATOR, SasSimulator, build_app
from cloudsim.server import SimState
from image_gate.clouds import credentials as shared
from image_gate.clouds.aliyun import (
    AliyunCredential,
    CredentialsError,
    CredentialsUnavailable,
    RrsaCredentials,
    StaticCredentials,
    configured,
    fingerprint,
    from_environment,
)
from image_gate.clouds.aliyun.credentials import sts_endpoint
from image_gate.clouds.credentials import mask
from tests.rrsa import PROVIDER_ARN, ROLE_ARN

START = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def jwt(subject: str, *, expires: float) -> str:
    """An unsigned JWT-shaped token: cloudsim's STS reads only its claims."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"sub": subject, "iss": "https://oidc-ack.example", "aud": "sts.aliyuncs.com", "exp": int(expires)}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def rotate(token_file: Path, token: str) -> None:
    """What the kubelet does to a projected token (sync: async tests must not do file I/O inline)."""
    token_file.write_text(token)


def current_token(token_file: Path) -> str:
    return token_file.read_text()


# --- the environment chain -----------------------------------------------------------------------


def rrsa_env(token_file: str) -> dict[str, str]:
    """The three variables that select RRSA: the role, the OIDC provider and the projected token file."""
    return {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": token_file,
    }


def access_key_env(key_id: str) -> dict[str, str]:
    """The two variables of an access key pair: ``key_id`` and the secret ``s3cret-value``."""
    return {"ALIBABA_CLOUD_ACCESS_KEY_ID": key_id, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cret-value"}


def test_access_keys_come_first() -> None:
    env = {**access_key_env("LTAI5tExampleKey0001"), **rrsa_env("/var/run/secrets/token")}
    provider = from_environment(env)
    assert isinstance(provider, StaticCredentials)
    assert provider.credential == AliyunCredential("LTAI5tExampleKey0001", "s3cret-value")
    assert provider.fingerprint == fingerprint("LTAI5tExampleKey0001")


def test_security_token_makes_sts_credentials() -> None:
    env = {**access_key_env("STS.NTExampleKey0001"), "ALIBABA_CLOUD_SECURITY_TOKEN": "CAIS-token"}
    provider = from_environment(env)
    assert isinstance(provider, StaticCredentials)
    assert provider.credential.security_token == "CAIS-token"
    assert provider.credential.is_sts


def test_rrsa_when_all_three_are_set() -> None:
    env = {
        **rrsa_env("/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token"),
        "ALIBABA_CLOUD_ROLE_SESSION_NAME": "gate",
        "ALIBABA_CLOUD_STS_REGION": "cn-hangzhou",
    }
    provider = from_environment(env)
    assert isinstance(provider, RrsaCredentials)
    assert provider.sts_endpoint == "https://sts.cn-hangzhou.aliyuncs.com"
    assert provider.session_name == "gate"
    assert provider.token_file == Path("/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token")
    assert provider.fingerprint == fingerprint(ROLE_ARN)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "https://sts.aliyuncs.com"),
        ({"ALIBABA_CLOUD_STS_REGION": "cn-shanghai"}, "https://sts.cn-shanghai.aliyuncs.com"),
        (
            {"ALIBABA_CLOUD_STS_REGION": "cn-shanghai", "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true"},
            "https://sts-vpc.cn-shanghai.aliyuncs.com",
        ),
        ({"ALIBABA_CLOUD_STS_ENDPOINT": "sts-vpc.cn-beijing.aliyuncs.com"}, "https://sts-vpc.cn-beijing.aliyuncs.com"),
        (
            {"ALIBABA_CLOUD_STS_ENDPOINT": "http://127.0.0.1:8080/", "ALIBABA_CLOUD_STS_REGION": "cn-shanghai"},
            "http://127.0.0.1:8080",
        ),
    ],
)
def test_sts_endpoint(env: dict[str, str], expected: str) -> None:
    assert sts_endpoint(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tExampleKey0001"}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cret-value"}, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        ({"ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN}, "ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        ({}, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ],
)
def test_missing_or_half_set_variables_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        from_environment(env)
    assert named in str(caught.value)
    assert "s3cret-value" not in str(caught.value)


def test_blank_values_count_as_unset() -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": " ",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "",
        **rrsa_env("/token"),
    }
    assert isinstance(from_environment(env), RrsaCredentials)


# --- masking -------------------------------------------------------------------------------------


def test_repr_and_str_mask_secrets() -> None:
    credential = AliyunCredential(
        "STS.NTExampleKey0001", "s3cret-value", security_token="CAIS-token-value", expires_at=START
    )
    for text in (repr(credential), str(credential), repr(StaticCredentials(credential)), str([credential])):
        assert "s3cret-value" not in text
        assert "CAIS-token-value" not in text
        assert "STS.NTExampleKey0001" not in text
        assert "ExampleKey" not in text
    assert "STS.****" in repr(credential)


def test_an_access_key_id_is_masked_the_shared_way() -> None:
    assert mask("LTAI5tExampleKey0001") == "LTAI****"
    assert mask("short") == "****"


def test_fingerprint_is_a_short_one_way_name() -> None:
    value = fingerprint("LTAI5tExampleKey0001")
    assert len(value) == 12
    assert value == fingerprint("LTAI5tExampleKey0001") != fingerprint("LTAI5tExampleKey0002")
    assert int(value, 16) >= 0


def test_rrsa_repr_names_the_role_not_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("oidc-token-content")
    provider = RrsaCredentials(role_arn=ROLE_ARN, oidc_provider_arn=PROVIDER_ARN, token_file=token_file)
    assert ROLE_ARN in repr(provider)
    assert "oidc-token-content" not in repr(provider) + str(provider)


# --- RRSA against cloudsim's STS -----------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Sts:
    url: str
    state: SimState
    simulator: SasSimulator

    @property
    def calls(self) -> int:
        return self.state.faults.calls["AssumeRoleWithOIDC"]


@pytest.fixture
async def sts(clock: FakeClock) -> AsyncIterator[Sts]:
    state = SimState(catalogue=Catalogue(), clock=clock)
    app = build_app(state)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Sts(str(server.make_url("")).rstrip("/"), state, app[SIMULATOR])
    finally:
        await server.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "rrsa-token"
    path.write_text(jwt("system:serviceaccount:image-gate:image-gate", expires=START + 86_400))
    return path


@pytest.fixture
async def rrsa(sts: Sts, token_file: Path, clock: FakeClock) -> AsyncIterator[RrsaCredentials]:
    url = sts.url
    env = {
        **rrsa_env(str(token_file)),
        "ALIBABA_CLOUD_STS_ENDPOINT": url,
    }
    provider = from_environment(env, clock=clock)
    assert isinstance(provider, RrsaCredentials)
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_rrsa_exchanges_the_token_for_sts_credentials(rrsa: RrsaCredentials, sts: Sts) -> None:
    credential = await rrsa.credentials()
    assert credential.access_key_id.startswith("STS.")
    assert credential.is_sts
    assert credential.expires_at == START + 3600
    assert credential.access_key_id in sts.simulator.issued
    assert sts.calls == 1
    assert await rrsa.credentials() is credential  # fresh: no second call
    assert sts.calls == 1


async def test_renews_only_in_the_last_15_minutes(rrsa: RrsaCredentials, sts: Sts, clock: FakeClock) -> None:
    first = await rrsa.credentials()
    clock.advance(44 * 60)  # 16 minutes left
    assert await rrsa.credentials() is first
    await rrsa.wait_idle()
    assert sts.calls == 1

    clock.advance(2 * 60)  # 14 minutes left: still valid, so served at once while renewing behind
    assert await rrsa.credentials() is first
    await rrsa.wait_idle()
    assert sts.calls == 2
    second = await rrsa.credentials()
    assert second is not first
    assert second.expires_at == clock.now + 3600


async def test_an_expired_credential_waits_for_renewal(rrsa: RrsaCredentials, sts: Sts, clock: FakeClock) -> None:
    first = await rrsa.credentials()
    clock.advance(3600 + 1)
    second = await rrsa.credentials()
    assert second is not first
    assert sts.calls == 2


async def test_token_file_is_read_again_on_every_renewal(
    rrsa: RrsaCredentials, sts: Sts, clock: FakeClock, token_file: Path
) -> None:
    first = await rrsa.credentials()

    # The kubelet rotated the token into one that STS refuses: the renewal must use it, and fail.
    rotate(token_file, "invalid-rotated-token")
    clock.advance(50 * 60)
    assert await rrsa.credentials() is first  # still valid: served while the renewal fails behind it
    await rrsa.wait_idle()
    assert sts.calls == 2
    assert await rrsa.credentials() is first  # within the failure back-off: no new call
    assert sts.calls == 2

    # A good token again: the next renewal reads it and succeeds.
    rotate(token_file, jwt("system:serviceaccount:image-gate:image-gate", expires=clock.now + 86_400))
    clock.advance(10)
    await rrsa.credentials()
    await rrsa.wait_idle()
    renewed = await rrsa.credentials()
    assert sts.calls == 3
    assert renewed is not first
    assert renewed.expires_at == clock.now + 3600


async def test_one_renewal_for_many_concurrent_callers(rrsa: RrsaCredentials, sts: Sts, clock: FakeClock) -> None:
    sts.state.faults.add(Fault(api="AssumeRoleWithOIDC", kind="latency", seconds=0.2, times=1))
    results = await asyncio.gather(*(rrsa.credentials() for _ in range(50)))
    assert sts.calls == 1
    assert len({id(result) for result in results}) == 1

    clock.advance(3600 + 1)  # expired: everyone waits, for one call
    sts.state.faults.add(Fault(api="AssumeRoleWithOIDC", kind="latency", seconds=0.2, times=1))
    renewed = await asyncio.gather(*(rrsa.credentials() for _ in range(50)))
    assert sts.calls == 2
    assert len({id(result) for result in renewed}) == 1
    assert renewed[0] is not results[0]


async def test_a_caller_giving_up_does_not_cancel_the_renewal(rrsa: RrsaCredentials, sts: Sts) -> None:
    sts.state.faults.add(Fault(api="AssumeRoleWithOIDC", kind="latency", seconds=0.3, times=1))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await rrsa.credentials()
    await rrsa.wait_idle()
    await rrsa.credentials()
    assert sts.calls == 1


async def test_refused_token_is_a_credentials_error_without_the_token(
    rrsa: RrsaCredentials, sts: Sts, token_file: Path, clock: FakeClock
) -> None:
    rotate(token_file, jwt("system:serviceaccount:x:y", expires=clock.now - 1))
    with pytest.raises(CredentialsError) as caught:
        await rrsa.credentials()
    assert not isinstance(caught.value, CredentialsUnavailable)
    assert caught.value.code == "AuthenticationFail.OIDCToken.Expired"
    assert caught.value.request_id
    assert current_token(token_file) not in str(caught.value)
    # Repeated to callers within the back-off without asking STS again.
    with pytest.raises(CredentialsError):
        await rrsa.credentials()
    assert sts.calls == 1


async def test_sts_server_error_is_unavailable(rrsa: RrsaCredentials, sts: Sts) -> None:
    sts.state.faults.add(Fault(api="AssumeRoleWithOIDC", kind="error", status=503, times=1))
    with pytest.raises(CredentialsUnavailable):
        await rrsa.credentials()


async def test_sts_unreachable_is_unavailable(token_file: Path, clock: FakeClock) -> None:
    provider = RrsaCredentials(
        role_arn=ROLE_ARN,
        oidc_provider_arn=PROVIDER_ARN,
        token_file=token_file,
        sts_endpoint="http://127.0.0.1:9",
        clock=clock,
        timeout=2.0,
    )
    try:
        with pytest.raises(CredentialsUnavailable):
            await provider.credentials()
    finally:
        await provider.aclose()


async def test_missing_token_file_is_named(tmp_path: Path, clock: FakeClock) -> None:
    provider = RrsaCredentials(
        role_arn=ROLE_ARN, oidc_provider_arn=PROVIDER_ARN, token_file=tmp_path / "absent", clock=clock
    )
    try:
        with pytest.raises(CredentialsError, match="absent"):
            await provider.credentials()
    finally:
        await provider.aclose()


async def test_no_secret_in_logs(
    rrsa: RrsaCredentials, token_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = current_token(token_file)
    credential = await rrsa.credentials()
    clock.advance(3600 + 1)
    rotate(token_file, "invalid-token")
    with pytest.raises(CredentialsError):
        await rrsa.credentials()
    assert caplog.records, "expected log records (httpx logs each request at INFO)"
    secrets = (token, "invalid-token", credential.access_key_secret, credential.security_token or "?")
    for record in caplog.records:
        message = record.getMessage()
        for secret in secrets:
            assert secret not in message, f"{record.name} logged a secret"
        assert credential.access_key_id not in message


# --- the shared vocabulary ---------------------------------------------------------------------


def test_configured_counts_any_variable_even_half_a_pair() -> None:
    assert not configured({})
    assert not configured({"ALIBABA_CLOUD_ACCESS_KEY_ID": "  "})
    assert configured({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tExampleKey0001"})  # half: from_environment says why
    assert configured({"ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN})
    assert not configured({"HUAWEICLOUD_SDK_AK": "x"})


def test_the_errors_are_the_shared_ones() -> None:
    assert CredentialsError is shared.CredentialsError
    assert issubclass(CredentialsUnavailable, shared.CredentialsError)
    with pytest.raises(shared.CredentialsError):
        from_environment({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tExampleKey0001"})
