"""SasClient against cloudsim's SAS, over real HTTPS on 127.0.0.1, verified against a test CA.

Every fault cloudsim can inject ends in its documented outcome; credentials
that are wrong, skewed, temporary (STS) or renewed through RRSA behave as on
Alibaba Cloud; and no credential ever shows up in a log line, an outcome or a
repr.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudsim.catalogue import AliyunImage, CatalogueImage
from cloudsim.faults import Fault, FaultKind
from cloudsim.server import Simulators
from image_gate.clouds.aliyun import (
    AcrRepository,
    AliyunCredential,
    RrsaCredentials,
    SasClient,
    fingerprint,
    from_environment,
)
from image_gate.clouds.aliyun.client import classify_error, throttle_time_left
from image_gate.clouds.quota import QuotaBook, Rate
from image_gate.clouds.retry import RetryPolicy
from image_gate.core import outcomes
from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.facts.registries import AcrLocation, RegistryMapping
from tests.recorder import Recorder
from tests.rrsa import PROVIDER_ARN, ROLE_ARN, rrsa_provider
from tests.tlsutil import TestPki

KEY_ID = "LTAI5tCloudsimDemoKey01"
SECRET = "cloudsim-demo-aliyun-secret-01"
STS_KEY_ID = "STS.NTCloudsimDemoSts01"
STS_SECRET = "cloudsim-demo-aliyun-sts-secret-01"
STS_TOKEN = "CAISCloudsimDemoSecurityToken01"
OIDC_TOKEN = "header.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6aW1hZ2UtZ2F0ZTppbWFnZS1nYXRlIn0.signature"
WEB = "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0"
FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
SECRETS = (SECRET, STS_SECRET, STS_TOKEN, OIDC_TOKEN)


@pytest.fixture(autouse=True)
def clean(sim: Simulators) -> Iterator[None]:
    state = sim.state
    images = list(state.catalogue.images)

    def reset() -> None:
        state.faults.reset()
        state.sas_rate = None
        state.clock = time.time
        state.max_skew = 15 * 60
        state.catalogue.images[:] = images

    reset()
    yield
    reset()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_client(sim: Simulators, pki: TestPki, credentials: Any = None, **options: Any) -> SasClient:
    options.setdefault("retry", FAST_RETRIES)
    return SasClient(
        credentials or AliyunCredential(KEY_ID, SECRET), endpoint=sim.sas_url, verify=pki.ca_file, **options
    )


@pytest.fixture
async def client(sim: Simulators, pki: TestPki, recorder: Recorder) -> AsyncIterator[SasClient]:
    async with make_client(sim, pki, observer=recorder) as sas:
        yield sas


def calls(sim: Simulators, api: str) -> int:
    return sim.state.faults.calls[api]


def image(text: str) -> tuple[ImageReference, AcrLocation]:
    reference = ImageReference.parse(text)
    location = RegistryMapping.default().acr_location(reference)
    assert location is not None
    return reference, location


async def digest_of(sas: SasClient, text: str, *, seconds: float = 3.0) -> outcomes.Outcome[str]:
    reference, location = image(text)
    deadline = Deadline.after(seconds)
    repository = await sas.find_repository(reference, location, deadline=deadline)
    if not isinstance(repository, outcomes.Found):
        return repository
    assert reference.tag is not None
    return await sas.registry_digest(repository.value, reference.tag, deadline=deadline)


WEB_REPOSITORY = AcrRepository("cn-hangzhou", "cri-cloudsimdemo0001", "crr-cloudsimshopweb1", "shop", "web")


# --- the catalogue resolves ------------------------------------------------------------------


async def test_every_catalogue_image_resolves_to_its_digest(sim: Simulators, client: SasClient) -> None:
    images = sim.state.catalogue.aliyun_images()
    assert len(images) >= 5
    for entry in images:
        outcome = await digest_of(client, str(entry.reference))
        assert isinstance(outcome, outcomes.Found), (entry.reference, outcome)
        assert outcome.value == entry.digest
        assert outcome.value.startswith("sha256:")
        assert outcome.request_id


async def test_find_repository_matches_exactly(client: SasClient) -> None:
    # cloudsim matches "web" loosely (web-admin too) and holds shop/web in cn-shanghai as well.
    reference, location = image(WEB)
    outcome = await client.find_repository(reference, location, deadline=Deadline.after(3))
    assert outcome == outcomes.Found(
        WEB_REPOSITORY, request_id=outcome.request_id if isinstance(outcome, outcomes.Found) else None
    )


async def test_configured_instance_id_narrows_the_search(client: SasClient) -> None:
    reference, _ = image(WEB)
    right = AcrLocation("cn-hangzhou", "cri-cloudsimdemo0001")
    wrong = AcrLocation("cn-hangzhou", "cri-doesnotexist01")
    found = await client.find_repository(reference, right, deadline=Deadline.after(3))
    assert isinstance(found, outcomes.Found)
    assert found.value == WEB_REPOSITORY
    missing = await client.find_repository(reference, wrong, deadline=Deadline.after(3))
    assert isinstance(missing, outcomes.NotFound)
    assert "cri-doesnotexist01" in missing.detail


async def test_pages_through_results(sim: Simulators, pki: TestPki) -> None:
    async with make_client(sim, pki, page_size=1) as sas:
        outcome = await digest_of(sas, "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.1")
    assert isinstance(outcome, outcomes.Found)
    assert calls(sim, "DescribeImageInstances") == 3  # web:2.0, web:2.1 and web-admin:1.0 match loosely


async def test_unknown_repository_and_tag_are_not_found(client: SasClient) -> None:
    repository = await digest_of(client, "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/nope:1.0")
    assert isinstance(repository, outcomes.NotFound)
    assert "shop/nope" in repository.detail
    tag = await client.registry_digest(WEB_REPOSITORY, "9.9", deadline=Deadline.after(3))
    assert isinstance(tag, outcomes.NotFound)
    assert tag.request_id


async def test_same_repository_in_two_instances_is_ambiguous(sim: Simulators, client: SasClient) -> None:
    twin = CatalogueImage(
        reference=ImageReference.parse("twin-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0"),
        digest="sha256:" + "ab" * 32,
        aliyun=AliyunImage("cn-hangzhou", "cri-cloudsimtwin0001", "crr-cloudsimtwinweb1", "x" * 64),
    )
    sim.state.catalogue.images.append(twin)
    reference, location = image(WEB)
    outcome = await client.find_repository(reference, location, deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.NotFound)
    assert "cri-cloudsimdemo0001, cri-cloudsimtwin0001" in outcome.detail
    assert "instanceId" in outcome.detail


# --- faults -> outcomes ------------------------------------------------------------------------


async def test_latency_within_the_deadline_is_found(sim: Simulators, client: SasClient) -> None:
    sim.state.faults.add(Fault(api="*", kind="latency", seconds=0.3))
    outcome = await digest_of(client, WEB)
    assert isinstance(outcome, outcomes.Found)


async def test_timeout_is_timed_out_within_the_deadline(sim: Simulators, client: SasClient) -> None:
    sim.state.faults.add(Fault(api="DescribeImage", kind="timeout"))
    started = time.monotonic()
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(0.5))
    assert isinstance(outcome, outcomes.TimedOut)
    assert time.monotonic() - started < 1.5
    assert outcome.api == "DescribeImage"


async def test_server_error_is_unavailable_after_retries(
    sim: Simulators, client: SasClient, recorder: Recorder
) -> None:
    sim.state.faults.add(Fault(api="DescribeImage", kind="error", status=500))
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Unavailable)
    assert outcome.code == "ServerError"
    assert outcome.request_id
    assert calls(sim, "DescribeImage") == 3
    assert recorder.calls == [("DescribeImage", "unavailable")] * 3


async def test_a_passing_server_error_is_retried_to_success(sim: Simulators, client: SasClient) -> None:
    sim.state.faults.add(Fault(api="DescribeImage", kind="error", status=503, times=1))
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Found)
    assert calls(sim, "DescribeImage") == 2


async def test_throttle_is_throttled_with_time_left(sim: Simulators, client: SasClient) -> None:
    sim.state.faults.add(Fault(api="DescribeImage", kind="throttle", retry_after=5.0))
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(1))
    assert isinstance(outcome, outcomes.Throttled)
    assert outcome.code == "Throttling.User"
    assert outcome.retry_after == pytest.approx(5.0)
    assert calls(sim, "DescribeImage") == 1  # 5 s does not fit into the deadline: no retry

    # The client now holds its own quota for that API: the next call does not even reach the cloud.
    again = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(1))
    assert isinstance(again, outcomes.Throttled)
    assert again.code is None
    assert again.retry_after is not None
    assert again.retry_after > 3.5
    assert calls(sim, "DescribeImage") == 1


async def test_short_throttle_is_waited_out(sim: Simulators, client: SasClient) -> None:
    sim.state.faults.add(Fault(api="DescribeImage", kind="throttle", retry_after=0.2, times=1))
    started = time.monotonic()
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Found)
    assert time.monotonic() - started >= 0.2
    assert calls(sim, "DescribeImage") == 2


async def test_cloud_rate_limit_is_throttled(sim: Simulators, client: SasClient) -> None:
    sim.state.sas_rate = Rate(2, 60.0)
    for _ in range(2):
        assert isinstance(
            await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3)), outcomes.Found
        )
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(1))
    assert isinstance(outcome, outcomes.Throttled)
    assert outcome.code == "Throttling.User"
    assert outcome.retry_after is not None
    assert 55 < outcome.retry_after <= 60


async def test_malformed_is_a_bad_response_not_retried(sim: Simulators, client: SasClient) -> None:
    sim.state.faults.add(Fault(api="DescribeImageInstances", kind="malformed"))
    reference, location = image(WEB)
    outcome = await client.find_repository(reference, location, deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.BadResponse)
    assert calls(sim, "DescribeImageInstances") == 1


@pytest.mark.parametrize(
    ("fault", "code", "says"),
    [
        pytest.param(Fault(api="DescribeImage", kind="auth"), "SignatureDoesNotMatch", "", id="bad signature"),
        pytest.param(
            Fault(api="DescribeImage", kind="error", status=403),
            "NoPermission",
            "caller has no permission",
            id="no permission",
        ),
    ],
)
async def test_a_refusal_is_unauthorized_not_retried(
    sim: Simulators, client: SasClient, fault: Fault, code: str, says: str
) -> None:
    sim.state.faults.add(fault)
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.code == code
    assert says in outcome.message
    assert calls(sim, "DescribeImage") == 1


async def test_connection_refused_is_unavailable(pki: TestPki) -> None:
    sas = SasClient(
        AliyunCredential(KEY_ID, SECRET), endpoint="https://127.0.0.1:9", verify=pki.ca_file, retry=FAST_RETRIES
    )
    async with sas:
        outcome = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(2))
    assert isinstance(outcome, outcomes.Unavailable)


async def test_an_expired_deadline_makes_no_call(sim: Simulators, client: SasClient) -> None:
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(0))
    assert isinstance(outcome, outcomes.TimedOut | outcomes.Throttled)
    assert calls(sim, "DescribeImage") == 0


async def test_client_side_quota(sim: Simulators, pki: TestPki, recorder: Recorder) -> None:
    async with make_client(sim, pki, rate=Rate(1, 0.3), observer=recorder, quota=QuotaBook()) as sas:
        assert isinstance(await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3)), outcomes.Found)
        assert isinstance(await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3)), outcomes.Found)
        assert len(recorder.waits) == 1  # the second call waited for its slot
        assert recorder.waits[0] > 0.1
        denied = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(0.05))
    assert isinstance(denied, outcomes.Throttled)
    assert calls(sim, "DescribeImage") == 2


# --- credentials -------------------------------------------------------------------------------


async def test_wrong_secret_is_unauthorized(sim: Simulators, pki: TestPki) -> None:
    async with make_client(sim, pki, AliyunCredential(KEY_ID, "not-the-secret")) as sas:
        outcome = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.code == "SignatureDoesNotMatch"
    assert calls(sim, "DescribeImage") == 1


async def test_unknown_access_key_is_unauthorized(sim: Simulators, pki: TestPki) -> None:
    async with make_client(sim, pki, AliyunCredential("LTAI5tNobodyKnowsThis", SECRET)) as sas:
        outcome = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.code == "InvalidAccessKeyId.NotFound"


async def test_skewed_clock_is_unauthorized(sim: Simulators, pki: TestPki) -> None:
    async with make_client(sim, pki, wall_clock=lambda: time.time() - 16 * 60) as sas:
        outcome = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.code == "InvalidTimeStamp.Expired"

    async with make_client(sim, pki, wall_clock=lambda: time.time() - 14 * 60) as sas:
        assert isinstance(await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3)), outcomes.Found)


async def test_static_sts_credentials(sim: Simulators, pki: TestPki) -> None:
    async with make_client(sim, pki, AliyunCredential(STS_KEY_ID, STS_SECRET, security_token=STS_TOKEN)) as sas:
        assert isinstance(await digest_of(sas, WEB), outcomes.Found)
    async with make_client(
        sim, pki, AliyunCredential(STS_KEY_ID, STS_SECRET, security_token="CAISSomeOtherToken")
    ) as sas:
        outcome = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.code == "InvalidSecurityToken.MismatchWithAccessKey"
    async with make_client(sim, pki, AliyunCredential(STS_KEY_ID, STS_SECRET)) as sas:
        outcome = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    assert isinstance(outcome, outcomes.Unauthorized)


async def test_rrsa_end_to_end(sim: Simulators, pki: TestPki, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(OIDC_TOKEN)
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
        "ALIBABA_CLOUD_STS_ENDPOINT": sim.sas_url,
    }
    provider = from_environment(env, verify=pki.ca_file)
    assert isinstance(provider, RrsaCredentials)
    quota = QuotaBook()
    try:
        async with make_client(sim, pki, provider, quota=quota) as sas:
            assert repr(sas).endswith(f"account={fingerprint(ROLE_ARN)!r})")
            outcome = await digest_of(sas, WEB)
            assert isinstance(outcome, outcomes.Found)
            outcome = await digest_of(sas, "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/api:3.4.1")
            assert isinstance(outcome, outcomes.Found)
    finally:
        await provider.aclose()
    assert calls(sim, "AssumeRoleWithOIDC") == 1


async def test_rrsa_refused_is_unauthorized(sim: Simulators, pki: TestPki, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("invalid-token-from-another-cluster")
    provider = rrsa_provider(sim, pki, token_file)
    try:
        async with make_client(sim, pki, provider) as sas:
            outcome = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
    finally:
        await provider.aclose()
    assert isinstance(outcome, outcomes.Unauthorized)
    assert "AuthenticationFail.OIDCToken.Invalid" in outcome.detail
    assert calls(sim, "DescribeImage") == 0


async def test_rrsa_credentials_expired_at_the_cloud_are_renewed(sim: Simulators, pki: TestPki, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(OIDC_TOKEN)
    provider = rrsa_provider(
        sim,
        pki,
        token_file,
        duration_seconds=900,
        refresh_before=60,
    )
    try:
        async with make_client(sim, pki, provider) as sas:
            assert isinstance(
                await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3)), outcomes.Found
            )
            # The cloud's clock runs 16 minutes ahead of ours (tolerated up to 20 here): it finds the 15-minute
            # STS credentials expired while we do not. Refused once, the credentials are renewed.
            real = time.time
            sim.state.max_skew = 20 * 60
            sim.state.clock = lambda: real() + 16 * 60
            first = await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3))
            assert isinstance(first, outcomes.Unauthorized)
            assert first.code == "InvalidSecurityToken.Expired"
            sim.state.clock = real
            assert isinstance(
                await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(3)), outcomes.Found
            )
    finally:
        await provider.aclose()
    assert calls(sim, "AssumeRoleWithOIDC") == 2


# --- nothing secret escapes --------------------------------------------------------------------


async def test_no_credential_in_logs_outcomes_or_reprs(
    sim: Simulators, pki: TestPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    texts: list[str] = []

    async def exercise(sas: SasClient) -> None:
        texts.append(repr(sas))
        kinds: tuple[FaultKind | None, ...] = (None, "error", "throttle", "malformed", "auth")
        for fault in kinds:
            sim.state.faults.reset()
            if fault is not None:
                sim.state.faults.add(Fault(api="*", kind=fault, retry_after=0.01, times=1))
            outcome = await digest_of(sas, WEB)
            texts.extend([repr(outcome), str(outcome)])
            if isinstance(outcome, outcomes.Failure):
                texts.append(outcome.message)

    for credential in (
        AliyunCredential(KEY_ID, SECRET),
        AliyunCredential(KEY_ID, "wrong-" + SECRET),
        AliyunCredential(STS_KEY_ID, STS_SECRET, security_token=STS_TOKEN),
    ):
        texts.append(repr(credential))
        async with make_client(sim, pki, credential) as sas:
            await exercise(sas)

    token_file = tmp_path / "token"
    token_file.write_text(OIDC_TOKEN)
    provider = rrsa_provider(sim, pki, token_file)
    try:
        async with make_client(sim, pki, provider) as sas:
            await exercise(sas)
            issued = await provider.credentials()
    finally:
        await provider.aclose()
    texts.append(repr(provider))

    texts.extend(record.getMessage() for record in caplog.records)
    assert any(record.name.startswith("httpx") for record in caplog.records)
    assert issued.security_token is not None
    forbidden = (*SECRETS, KEY_ID, STS_KEY_ID, issued.access_key_id, issued.access_key_secret, issued.security_token)
    for text in texts:
        for secret in forbidden:
            assert secret not in text, f"a credential leaked into: {text[:200]}"


@pytest.mark.parametrize(
    ("options", "endpoint"),
    [
        ({}, "https://tds.cn-shanghai.aliyuncs.com"),
        ({"site": "international"}, "https://tds.ap-southeast-1.aliyuncs.com"),
        ({"site": "international", "endpoint": "tds.example.test/"}, "https://tds.example.test"),
    ],
)
async def test_endpoints_by_site(options: dict[str, Any], endpoint: str) -> None:
    async with SasClient(AliyunCredential(KEY_ID, SECRET), **options) as sas:
        assert sas.endpoint == endpoint


# --- answers of every shape (in-process transport: shapes cloudsim does not produce) -------------


def assert_outcome(outcome: object, expected: Any) -> None:
    """``expected`` is an outcome type, or the exact outcome."""
    if isinstance(expected, type):
        assert isinstance(outcome, expected), outcome
    else:
        assert outcome == expected


def mock_client(answer: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> SasClient:
    handler = answer if callable(answer) else (lambda request: answer)
    return SasClient(
        AliyunCredential(KEY_ID, SECRET),
        endpoint="https://tds.example.test",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=1),
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"RequestId": "r", "Data": {"Digest": "AB" * 32}}, outcomes.Found("sha256:" + "ab" * 32, request_id="r")),
        (
            {"RequestId": "r", "Data": {"Digest": "sha256:" + "CD" * 32}},
            outcomes.Found("sha256:" + "cd" * 32, request_id="r"),
        ),
        ({"RequestId": "r", "Data": {"Digest": "0afb98d97f1a****"}}, outcomes.BadResponse),
        ({"RequestId": "r", "Data": {"Digest": 42}}, outcomes.BadResponse),
        ({"RequestId": "r", "Data": ["x"]}, outcomes.BadResponse),
        ({"RequestId": "r", "Data": None}, outcomes.NotFound),
        ({"RequestId": "r"}, outcomes.NotFound),
        ({"RequestId": "r", "Data": {"Digest": ""}}, outcomes.NotFound),
        (["not", "an", "object"], outcomes.BadResponse),
    ],
)
async def test_describe_image_answers(sim: Simulators, client: SasClient, body: Any, expected: Any) -> None:
    sim.state.faults.add(Fault(api="DescribeImage", kind="answer", body=body))
    outcome = await client.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(2))
    assert_outcome(outcome, expected)


async def test_describe_image_sends_the_documented_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"RequestId": "r", "Data": {"Digest": "ab" * 32}})

    async with mock_client(handler) as sas:
        await sas.registry_digest(WEB_REPOSITORY, "2.0", deadline=Deadline.after(2))
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == "/"
    assert request.content == b""
    assert request.headers["x-acs-action"] == "DescribeImage"
    assert request.headers["x-acs-version"] == "2018-12-03"
    assert request.url.query.decode() == (
        "ImageInstanceId=cri-cloudsimdemo0001&ImageRegionId=cn-hangzhou&ImageRepoId=crr-cloudsimshopweb1&ImageTag=2.0"
    )
    assert request.headers["authorization"].startswith(f"ACS3-HMAC-SHA256 Credential={KEY_ID},SignedHeaders=host;")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"RequestId": "r", "ImageInstanceList": "nope"}, outcomes.BadResponse),
        ({"RequestId": "r", "ImageInstanceList": [1, 2]}, outcomes.BadResponse),
        ({"RequestId": "r", "ImageInstanceList": [], "PageInfo": {"TotalCount": "many"}}, outcomes.BadResponse),
        ({"RequestId": "r"}, outcomes.NotFound),
        # Rows without the fields we match on are skipped, not trusted.
        ({"RequestId": "r", "ImageInstanceList": [{"RepoNamespace": "shop", "RepoName": "web"}]}, outcomes.NotFound),
        (
            {
                "RequestId": "r",
                "ImageInstanceList": [
                    {
                        "RepoNamespace": "shop",
                        "RepoName": "web",
                        "RegionId": "cn-hangzhou",
                        "InstanceId": "cri-cloudsimdemo0001",
                        "RepoId": "crr-cloudsimshopweb1",
                    }
                ],
            },
            outcomes.Found(WEB_REPOSITORY, request_id="r"),
        ),
    ],
)
async def test_describe_image_instances_answers(sim: Simulators, client: SasClient, body: Any, expected: Any) -> None:
    reference, location = image(WEB)
    sim.state.faults.add(Fault(api="DescribeImageInstances", kind="answer", body=body))
    outcome = await client.find_repository(reference, location, deadline=Deadline.after(2))
    assert_outcome(outcome, expected)


async def test_criteria_are_the_documented_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"RequestId": "r", "ImageInstanceList": [], "PageInfo": {"TotalCount": 0}})

    reference, _ = image(WEB)
    async with mock_client(handler) as sas:
        await sas.find_repository(reference, AcrLocation("cn-hangzhou", "cri-x"), deadline=Deadline.after(2))
    params = dict(seen[0].url.params)
    assert json.loads(params["Criteria"]) == [
        {"name": "repoNamespace", "value": "shop", "logicalExp": "AND"},
        {"name": "repoName", "value": "web", "logicalExp": "AND"},
        {"name": "regionId", "value": "cn-hangzhou", "logicalExp": "AND"},
        {"name": "instanceId", "value": "cri-x", "logicalExp": "AND"},
    ]
    assert params["LogicalExp"] == "AND"
    assert params["CurrentPage"] == "1"


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "code"),
    [
        (400, {"Code": "Throttling.Api", "Message": "m", "RequestId": "r"}, {}, outcomes.Throttled, "Throttling.Api"),
        (429, {}, {}, outcomes.Throttled, None),
        (400, {"code": "Forbidden.RAM", "message": "m", "requestId": "r"}, {}, outcomes.Unauthorized, "Forbidden.RAM"),
        (400, {"Code": "InvalidSecurityToken.Malformed"}, {}, outcomes.Unauthorized, "InvalidSecurityToken.Malformed"),
        (403, {"Code": "SomethingNew"}, {}, outcomes.Unauthorized, "SomethingNew"),
        (401, None, {}, outcomes.Unauthorized, None),
        (502, None, {}, outcomes.Unavailable, None),
        (400, {"Code": "ServerError"}, {}, outcomes.Unavailable, "ServerError"),
        (400, {"Code": "InvalidParameter"}, {}, outcomes.BadResponse, "InvalidParameter"),
    ],
)
def test_classify_error(
    status: int, body: dict[str, Any] | None, headers: dict[str, str], kind: type[outcomes.Failure], code: str | None
) -> None:
    response = httpx.Response(status, json=body) if body is not None else httpx.Response(status, text="<html/>")
    failure = classify_error(response, api="DescribeImage")
    assert type(failure) is kind
    assert failure.code == code
    if body and ("RequestId" in body or "requestId" in body):
        assert failure.request_id == "r"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-ratelimit-user-api": "Limit:10,Remain:0,TimeLeft:1500,Reset:1"}, 1.5),
        (
            {
                "x-ratelimit-user-api": "Limit:10,Remain:0,TimeLeft:1500,Reset:1",
                "x-ratelimit-user": "Limit:100,Remain:0,TimeLeft:4000,Reset:1",
            },
            4.0,
        ),
        ({"x-acs-retry-after": "250"}, 0.25),
        ({"x-ratelimit-user-api": "garbage"}, None),
        ({}, None),
    ],
)
def test_throttle_time_left(headers: dict[str, str], seconds: float | None) -> None:
    assert throttle_time_left(httpx.Headers(headers)) == seconds


async def test_closing_the_client_closes_its_credential_provider(tmp_path: Path) -> None:
    provider = RrsaCredentials(role_arn=ROLE_ARN, oidc_provider_arn=PROVIDER_ARN, token_file=tmp_path / "t")
    closed: list[bool] = []
    original = provider.aclose

    async def aclose() -> None:
        closed.append(True)
        await original()

    provider.aclose = aclose  # type: ignore[method-assign]
    async with SasClient(provider):
        pass
    assert closed == [True]
