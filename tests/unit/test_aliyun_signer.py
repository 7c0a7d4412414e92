"""ACS3-HMAC-SHA256: the published vectors, and agreement with the vendor's own signer.

The vectors live in ``tests/data/aliyun/vectors.json`` with their sources. The
official signer is ``get_authorization`` of ``alibabacloud_openapi_util`` (the
darabonba util) and its copy in ``alibabacloud_tea_openapi.utils``, which the
SAS SDK uses; every installed one is compared with ours on generated requests.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_gate.clouds.aliyun import AliyunCredential, AliyunSigner, RrsaCredentials
from image_gate.clouds.aliyun.signer import (
    EMPTY_PAYLOAD_SHA256,
    acs_date,
    canonical_headers,
    canonical_query_string,
    canonical_request,
    is_signed_header,
    percent_encode,
    sign_string,
    string_to_sign,
)

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "aliyun" / "vectors.json").read_text(encoding="utf-8"))


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _signed(
    vector: dict[str, Any], *, credential: AliyunCredential | None = None
) -> tuple[httpx.Request, AliyunSigner]:
    credential = credential or AliyunCredential(vector["access_key_id"], vector["access_key_secret"])
    signer = AliyunSigner(credential, clock=lambda: _epoch(vector["date"]), nonce=lambda: vector["nonce"])
    request = httpx.Request(
        vector["method"],
        vector["url"],
        headers={"x-acs-action": vector["action"], "x-acs-version": vector["version"]},
        content=vector["body"].encode(),
    )
    signer.sign(request, credential)
    return request, signer


def _official_signers() -> list[Any]:
    """Every installed copy of the vendor's get_authorization."""
    found = []
    for module, attribute in (
        ("alibabacloud_openapi_util.client", "Client"),
        ("alibabacloud_tea_openapi.utils", "Utils"),
    ):
        try:
            found.append(pytest.param(getattr(importlib.import_module(module), attribute), id=module))
        except (ImportError, AttributeError):
            continue
    return found


OFFICIAL = _official_signers()


# --- published vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["acs3"], ids=[v["name"] for v in VECTORS["acs3"]])
def test_published_vector_signature(vector: dict[str, Any]) -> None:
    request, _ = _signed(vector)
    authorization = request.headers["authorization"]
    assert authorization.endswith(f"Signature={vector['signature']}")
    if "authorization" in vector:
        assert authorization == vector["authorization"]


@pytest.mark.parametrize("vector", VECTORS["acs3"], ids=[v["name"] for v in VECTORS["acs3"]])
def test_published_vector_intermediate_values(vector: dict[str, Any]) -> None:
    request, _ = _signed(vector)
    query = canonical_query_string(parse_qsl(request.url.query.decode(), keep_blank_values=True))
    block, signed = canonical_headers(
        (name, value) for name, value in request.headers.multi_items() if is_signed_header(name)
    )
    canonical = canonical_request("POST", "/", query, block, signed, EMPTY_PAYLOAD_SHA256)
    if "canonical_request" in vector:
        assert canonical == vector["canonical_request"]
    assert hashlib.sha256(canonical.encode()).hexdigest() == vector["canonical_request_sha256"]
    assert sign_string(vector["access_key_secret"], string_to_sign(canonical)) == vector["signature"]


@pytest.mark.parametrize("vector", VECTORS["acs3"], ids=[v["name"] for v in VECTORS["acs3"]])
def test_published_vector_headers_on_the_wire(vector: dict[str, Any]) -> None:
    request, _ = _signed(vector)
    assert request.headers["x-acs-date"] == vector["date"]
    assert request.headers["x-acs-signature-nonce"] == vector["nonce"]
    assert request.headers["x-acs-content-sha256"] == EMPTY_PAYLOAD_SHA256
    assert "x-acs-security-token" not in request.headers
    # The query string sent is the canonical one, byte for byte.
    assert request.url.query.decode() == vector["url"].split("?", 1)[1]


def test_util_unit_test_vector() -> None:
    vector = VECTORS["util_unit_test"]
    block, signed = canonical_headers([(name, value) for name, value in vector["headers"]])
    canonical = canonical_request(
        vector["method"],
        vector["pathname"],
        canonical_query_string(vector["query"]),
        block,
        signed,
        vector["payload_sha256"],
    )
    assert canonical == vector["canonical_request"]
    signature = sign_string(vector["access_key_secret"], string_to_sign(canonical))
    assert (
        f"ACS3-HMAC-SHA256 Credential={vector['access_key_id']},SignedHeaders={signed},Signature={signature}"
        == (vector["authorization"])
    )


@pytest.mark.parametrize("official", OFFICIAL)
def test_util_unit_test_vector_with_the_official_signer(official: Any) -> None:
    vector = VECTORS["util_unit_test"]
    request = SimpleNamespace(
        method=vector["method"], pathname=vector["pathname"], query=vector["query"], headers=dict(vector["headers"])
    )
    assert (
        official.get_authorization(
            request, "ACS3-HMAC-SHA256", vector["payload_sha256"], vector["access_key_id"], vector["access_key_secret"]
        )
        == vector["authorization"]
    )


def test_percent_encoding_vector() -> None:
    vector = VECTORS["percent_encoding"]
    assert canonical_query_string(vector["query"]) == vector["canonical"]


@pytest.mark.parametrize(
    ("text", "encoded"),
    [(" ", "%20"), ("*", "%2A"), ("~", "~"), ("/", "%2F"), ("+", "%2B"), ("-_.", "-_."), ("é", "%C3%A9"), ("", "")],
)
def test_percent_encode_is_rfc3986(text: str, encoded: str) -> None:
    assert percent_encode(text) == encoded


def test_acs_date_is_utc_to_the_second() -> None:
    assert acs_date(_epoch("2023-10-26T10:22:32Z") + 0.999) == "2023-10-26T10:22:32Z"


def test_sts_token_is_sent_and_signed() -> None:
    vector = VECTORS["acs3"][2]
    credential = AliyunCredential("STS.NUexample1234", "secret", security_token="CAIS-token/with+odd=chars")
    request, _ = _signed(vector, credential=credential)
    assert request.headers["x-acs-security-token"] == "CAIS-token/with+odd=chars"
    assert "x-acs-security-token" in request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert request.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=STS.NUexample1234,")


def test_resigning_replaces_the_previous_signature_and_token() -> None:
    vector = VECTORS["acs3"][0]
    sts = AliyunCredential("STS.NUexample1234", "secret", security_token="token")
    request, signer = _signed(vector, credential=sts)
    signer.sign(request, AliyunCredential(vector["access_key_id"], vector["access_key_secret"]))
    assert "x-acs-security-token" not in request.headers
    assert request.headers["authorization"] == vector["authorization"]


def test_body_is_hashed() -> None:
    credential = AliyunCredential("LTAIexample123456", "secret")
    signer = AliyunSigner(credential, clock=lambda: 0, nonce=lambda: "n")
    request = httpx.Request("POST", "https://example.com/", content=b"a=1")
    signer.sign(request, credential)
    assert request.headers["x-acs-content-sha256"] == hashlib.sha256(b"a=1").hexdigest()


def test_sync_client_flow_with_fixed_credentials() -> None:
    vector = VECTORS["acs3"][0]
    credential = AliyunCredential(vector["access_key_id"], vector["access_key_secret"])
    signer = AliyunSigner(credential, clock=lambda: _epoch(vector["date"]), nonce=lambda: vector["nonce"])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=signer) as client:
        client.post(vector["url"], headers={"x-acs-action": vector["action"], "x-acs-version": vector["version"]})
    assert seen[0].headers["authorization"] == vector["authorization"]


# --- agreement with the official signer on generated requests --------------------------------

# Parameter names are unreserved characters in every Alibaba API; the official util
# does not encode names, so generated names stay within that set.
_NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)
_ODD = st.sampled_from(["", " ", "~", "*", "+", "/", "a b", "a+b", "%", "%20", "=", "&", "?", "#", "é", "中文", "😀"])
_VALUES = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
    _ODD,
    st.lists(_ODD, max_size=5).map("".join),
)
_HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
_HOSTS = st.sampled_from(["tds.cn-shanghai.aliyuncs.com", "tds.ap-southeast-1.aliyuncs.com", "127.0.0.1:8443"])


@pytest.mark.parametrize("official", OFFICIAL)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST"]),
    host=_HOSTS,
    query=st.dictionaries(_NAMES, _VALUES, max_size=8),
    extra_headers=st.dictionaries(_NAMES.map(lambda name: f"x-acs-{name.lower()}"), _HEADER_VALUES, max_size=3),
    token=st.one_of(st.none(), _HEADER_VALUES),
    body=st.binary(max_size=64),
    when=st.integers(min_value=0, max_value=4_102_444_800),
    nonce=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    secret=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
)
def test_agrees_with_the_official_signer(
    official: Any,
    method: str,
    host: str,
    query: dict[str, str],
    extra_headers: dict[str, str],
    token: str | None,
    body: bytes,
    when: int,
    nonce: str,
    secret: str,
) -> None:
    reserved = {"x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256", "x-acs-security-token"}
    extra_headers = {name: value for name, value in extra_headers.items() if name not in reserved}
    credential = AliyunCredential("STS.example1234" if token else "LTAIexample1234", secret, security_token=token)
    signer = AliyunSigner(credential, clock=lambda: float(when), nonce=lambda: nonce)
    headers = {"x-acs-action": "DescribeImage", "x-acs-version": "2018-12-03", **extra_headers}
    request = httpx.Request(method, f"https://{host}/", params=query, headers=headers, content=body)
    signer.sign(request, credential)

    # What the official SDK would have put into the request before signing it.
    payload = hashlib.sha256(body).hexdigest()
    official_headers = {
        "host": host,
        **headers,
        "x-acs-date": acs_date(when),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": payload,
    }
    if token:
        official_headers["x-acs-security-token"] = token
    official_request = SimpleNamespace(method=method, pathname="/", query=dict(query), headers=official_headers)
    expected = official.get_authorization(
        official_request, "ACS3-HMAC-SHA256", payload, credential.access_key_id, secret
    )
    assert request.headers["authorization"] == expected

    # The wire carries the official canonical query string, and a server decodes the same values.
    # (The signatures agreeing already says the canonical strings agree; this pins the wire too.)
    wire = request.url.query.decode("ascii")
    assert wire == canonical_query_string(query)
    official_query: Callable[[dict[str, str]], str] | None = getattr(
        importlib.import_module(official.__module__), "get_canonical_query_string", None
    )
    if official_query is not None:
        assert wire == official_query(dict(query))
    assert dict(parse_qsl(wire, keep_blank_values=True)) == query


async def test_async_flow_asks_the_provider_each_time() -> None:
    vector = VECTORS["acs3"][0]

    class Provider:
        fingerprint = "f"
        asked = 0

        async def credentials(self) -> AliyunCredential:
            self.asked += 1
            return AliyunCredential(vector["access_key_id"], vector["access_key_secret"])

        def invalidate(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    provider = Provider()
    signer = AliyunSigner(provider, clock=lambda: _epoch(vector["date"]), nonce=lambda: vector["nonce"])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=signer) as client:
        for _ in range(2):
            await client.post(
                vector["url"], headers={"x-acs-action": vector["action"], "x-acs-version": vector["version"]}
            )
    assert provider.asked == 2
    assert [request.headers["authorization"] for request in seen] == [vector["authorization"]] * 2


def test_sync_flow_refuses_renewable_credentials(tmp_path: Path) -> None:
    provider = RrsaCredentials(
        role_arn="acs:ram::1:role/r", oidc_provider_arn="acs:ram::1:oidc-provider/p", token_file=tmp_path / "t"
    )
    with (
        httpx.Client(
            transport=httpx.MockTransport(lambda request: httpx.Response(200)), auth=AliyunSigner(provider)
        ) as client,
        pytest.raises(RuntimeError, match="AsyncClient"),
    ):
        client.get("https://example.com/")
