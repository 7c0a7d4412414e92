"""No part of a secret in any repr, str, outcome or log line, for every credential object of both clouds.

Every secret here is chosen by the test so that each 4 characters of it hold a ``~`` or a ``^``, which
nothing else writes: finding any 4 of its characters together in the text is finding a piece of the
secret, never a coincidence. Access key ids are names rather than secrets, shown masked to their first
four characters (`image_gate.clouds.credentials.mask`): no 5 of their characters may appear together.
Secrets cloudsim mints (Pod Identity and STS credentials, IAM tokens) are random: none may appear whole.

The flows run against cloudsim over real HTTPS, with every logger at DEBUG (httpx and httpcore
included), succeeding and refused alike.
"""

from __future__ import annotations

import logging
import random
import string
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from cloudsim.catalogue import Catalogue
from cloudsim.server import SimState, Simulators
from image_gate.clouds.aliyun import AliyunCredential, AliyunSigner, SasClient
from image_gate.clouds.aliyun import StaticCredentials as AliyunStatic
from image_gate.clouds.huawei import (
    HssClient,
    HuaweiCredentials,
    HuaweiSigner,
    IamPassword,
    IamToken,
    IamTokenAuth,
    PodIdentityCredentials,
    StaticCredentials,
)
from image_gate.clouds.pipeline import Identity
from image_gate.clouds.retry import RetryPolicy
from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.core.locations import AcrLocation, HssLocation
from image_gate.core.outcomes import Failure, Found
from tests.rrsa import rrsa_provider
from tests.tlsutil import TestPki


def secret(seed: str, length: int = 40) -> str:
    """A secret whose every 4 characters hold a ``~`` or a ``^`` (one in three characters is one)."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return "".join("~^"[(i // 3) % 2] if i % 3 == 0 else rng.choice(alphabet) for i in range(length))


HUAWEI_AK, HUAWEI_SK = secret("huawei-ak", 20), secret("huawei-sk")
TEMP_AK, TEMP_SK, TEMP_TOKEN = secret("temp-ak", 20), secret("temp-sk"), secret("temp-token", 120)
IAM_NAME, IAM_DOMAIN, IAM_PASSWORD = "secret-test-user", "secret-test-account", secret("iam-password", 24)
POD_TOKEN = secret("pod-identity-token", 60)
ALIYUN_KEY_ID, ALIYUN_SECRET = secret("aliyun-key-id", 24), secret("aliyun-secret", 30)
STS_KEY_ID, STS_SECRET, STS_TOKEN = secret("sts-key-id", 24), secret("sts-secret", 30), secret("sts-token", 150)
OIDC_TOKEN = secret("oidc-token", 200)
WRONG = secret("a-wrong-secret")
PROJECT = "0123456789abcdef0123456789abcdef"

KEY_IDS = (HUAWEI_AK, TEMP_AK, ALIYUN_KEY_ID, STS_KEY_ID)
SECRETS: tuple[str, ...] = (
    HUAWEI_SK,
    TEMP_SK,
    TEMP_TOKEN,
    IAM_PASSWORD,
    POD_TOKEN,
    ALIYUN_SECRET,
    STS_SECRET,
    STS_TOKEN,
)
SECRETS += (OIDC_TOKEN, WRONG, WRONG + HUAWEI_SK)

SWR = ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/team/app:1.0")
ACR = ImageReference.parse("demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0")
HSS_LOCATION = HssLocation(region="cn-north-4", image_type="private_image", project_id=PROJECT)
ACR_LOCATION = AcrLocation(region="cn-hangzhou", instance_id="cri-secrettest0001")
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


def catalogue() -> Catalogue:
    return Catalogue.from_dict(
        {
            "credentials": {
                "huawei": [
                    {"ak": HUAWEI_AK, "sk": HUAWEI_SK, "project_id": PROJECT},
                    {"ak": TEMP_AK, "sk": TEMP_SK, "project_id": PROJECT, "security_token": TEMP_TOKEN},
                ],
                "aliyun": [
                    {"access_key_id": ALIYUN_KEY_ID, "access_key_secret": ALIYUN_SECRET},
                    {"access_key_id": STS_KEY_ID, "access_key_secret": STS_SECRET, "security_token": STS_TOKEN},
                ],
            },
            "images": [
                {
                    "reference": str(SWR),
                    "digest": "sha256:" + "1" * 64,
                    "huawei": {"base_image": {"os_name": "Ubuntu", "os_version": "22.04", "layer_digest": ""}},
                },
                {
                    "reference": str(ACR),
                    "digest": "sha256:" + "2" * 64,
                    "aliyun": {"region": "cn-hangzhou", "instance_id": "cri-secrettest0001", "repo_id": "crr-web"},
                },
            ],
        }
    )


@pytest.fixture
def sim(pki: TestPki) -> Iterator[Simulators]:
    state = SimState(catalogue=catalogue(), hss_rate=None, iam_users=((IAM_NAME, IAM_PASSWORD, IAM_DOMAIN),))
    with Simulators(state.catalogue, ssl_context=pki.server_context(), state=state) as simulators:
        yield simulators


def pieces(value: str, size: int) -> Iterator[str]:
    return (value[i : i + size] for i in range(len(value) - size + 1))


def assert_no_piece_of_a_secret(text: str, *, minted: Iterable[str] = ()) -> None:
    for value in SECRETS:
        leaked = next((piece for piece in pieces(value, 4) if piece in text), None)
        assert leaked is None, f"4 characters of a secret ({leaked!r}) in:\n{_around(text, leaked)}"
    for value in KEY_IDS:
        leaked = next((piece for piece in pieces(value, 5) if piece in text), None)
        assert leaked is None, f"5 characters of a key id ({leaked!r}) in:\n{_around(text, leaked)}"
    for value in minted:
        assert value not in text, f"a minted secret ({value[:4]}…) in the text"


def _around(text: str, piece: str | None) -> str:
    at = text.find(piece or "")
    return text[max(0, at - 300) : at + 300]


def describe(outcome: object) -> list[str]:
    """The texts of an outcome: repr, str, and a failure's two messages."""
    texts = [repr(outcome), str(outcome)]
    if isinstance(outcome, Failure):
        texts += [outcome.message, outcome.public_message]
    return texts


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    names = ("", "httpx", "httpcore", "image_gate", "cloudsim", "aiohttp", "asyncio")
    levels = {name: logging.getLogger(name).level for name in names}
    caplog.set_level(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_the_secrets_are_what_the_check_assumes() -> None:
    for value in (*SECRETS, *KEY_IDS):
        assert all("~" in piece or "^" in piece for piece in pieces(value, 4))
    # ... and the check finds a piece of one.
    with pytest.raises(AssertionError, match="4 characters of a secret"):
        assert_no_piece_of_a_secret(f"... {HUAWEI_SK[10:14]} ...")


def token_files(folder: Path, token: str) -> tuple[Path, Path]:
    """A projected token file the credential service accepts, and one holding a token it refuses."""
    accepted, refused = folder / "token", folder / "refused-token"
    accepted.write_text(token, encoding="utf-8")
    refused.write_text("invalid" + token, encoding="utf-8")
    return accepted, refused


async def test_huawei_objects_and_calls_carry_no_piece_of_a_secret(
    sim: Simulators, pki: TestPki, tmp_path: Path, everything_at_debug: pytest.LogCaptureFixture
) -> None:
    token_file, refused_file = token_files(tmp_path, POD_TOKEN)
    permanent = HuaweiCredentials(ak=HUAWEI_AK, sk=HUAWEI_SK, project_id=PROJECT)
    temporary = HuaweiCredentials(ak=TEMP_AK, sk=TEMP_SK, security_token=TEMP_TOKEN, expires_at=2e9, source="env")
    wrong = HuaweiCredentials(ak=HUAWEI_AK, sk=WRONG + HUAWEI_SK)
    pod = PodIdentityCredentials(f"{sim.hss_url}/pod-identity/credentials", token_file, verify=pki.ca_file)
    refused_pod = PodIdentityCredentials(f"{sim.hss_url}/pod-identity/credentials", refused_file, verify=pki.ca_file)
    password = IamPassword(IAM_NAME, IAM_PASSWORD, IAM_DOMAIN)
    iam = IamTokenAuth(password, iam_endpoint=sim.hss_url, verify=pki.ca_file)
    refused_iam = IamTokenAuth(IamPassword(IAM_NAME, WRONG, IAM_DOMAIN), iam_endpoint=sim.hss_url, verify=pki.ca_file)
    objects: list[object] = [
        permanent,
        temporary,
        StaticCredentials(temporary),
        password,
        IamToken(value=TEMP_TOKEN, expires_at=2e9, project_id=PROJECT),
        Identity("ak-fingerprint", key_id=HUAWEI_AK, secrets=(HUAWEI_SK, TEMP_TOKEN)),
        pod,
        iam,
    ]
    texts: list[str] = []
    for auth in (
        HuaweiSigner(StaticCredentials(permanent)),
        HuaweiSigner(StaticCredentials(temporary)),
        HuaweiSigner(StaticCredentials(wrong)),
        HuaweiSigner(pod),
        HuaweiSigner(refused_pod),
        iam,
        refused_iam,
    ):
        client = HssClient(auth, endpoint=sim.hss_url, iam_endpoint=sim.hss_url, verify=pki.ca_file, retry=FAST)
        objects += [auth, client]
        found = await client.find_image(SWR, HSS_LOCATION, deadline=Deadline.after(5.0))
        texts += describe(found)
        if isinstance(found, Found):
            texts += describe(await client.base_image(found.value, HSS_LOCATION, deadline=Deadline.after(5.0)))
        texts += [repr(auth), str(auth), repr(client), str(client)]
        if auth not in (pod, iam):  # closed below, after their minted secrets are read
            await client.aclose()
    minted = await pod.credentials()
    token = await iam.token("cn-north-4")
    objects += [minted, token]
    texts += [text for item in objects for text in (repr(item), str(item))]
    await pod.aclose()
    await iam.aclose()

    assert "X-Subject-Token" in everything_at_debug.text, "httpcore did log IAM's answer headers"
    assert sim.state.faults.calls["ListImageBasicImage"] == 4, "the flows that should succeed did"
    assert_no_piece_of_a_secret(
        "\n".join(texts) + "\n" + everything_at_debug.text,
        minted=(minted.sk, minted.security_token or "", token.value),
    )


async def test_aliyun_objects_and_calls_carry_no_piece_of_a_secret(
    sim: Simulators, pki: TestPki, tmp_path: Path, everything_at_debug: pytest.LogCaptureFixture
) -> None:
    token_file, refused_file = token_files(tmp_path, OIDC_TOKEN)
    permanent = AliyunCredential(ALIYUN_KEY_ID, ALIYUN_SECRET)
    sts = AliyunCredential(STS_KEY_ID, STS_SECRET, security_token=STS_TOKEN, expires_at=2e9)
    wrong = AliyunCredential(ALIYUN_KEY_ID, WRONG + HUAWEI_SK)
    role, refused_role = rrsa_provider(sim, pki, token_file), rrsa_provider(sim, pki, refused_file)
    objects: list[object] = [permanent, sts, AliyunStatic(sts, source="environment (STS token)"), role]
    texts: list[str] = []
    for credentials in (AliyunStatic(permanent), AliyunStatic(sts), AliyunStatic(wrong), role, refused_role):
        client = SasClient(credentials, endpoint=sim.sas_url, verify=pki.ca_file, retry=FAST)
        objects += [credentials, AliyunSigner(credentials), client]
        found = await client.find_repository(ACR, ACR_LOCATION, deadline=Deadline.after(5.0))
        texts += describe(found)
        if isinstance(found, Found):
            texts += describe(await client.registry_digest(found.value, "2.0", deadline=Deadline.after(5.0)))
        if credentials is not role:  # closed below, after its minted secrets are read
            await client.aclose()
    minted = await role.credentials()
    objects.append(minted)
    texts += [text for item in objects for text in (repr(item), str(item))]
    await role.aclose()

    assert sim.state.faults.calls["DescribeImage"] == 3, "the flows that should succeed did"
    assert_no_piece_of_a_secret(
        "\n".join(texts) + "\n" + everything_at_debug.text,
        minted=(minted.access_key_secret, minted.security_token or ""),
    )
