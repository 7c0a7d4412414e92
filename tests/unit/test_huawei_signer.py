"""SDK-HMAC-SHA256: the published vectors, and agreement with the official SDK's Signer on generated requests."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_gate.clouds.huawei import HuaweiCredentials, HuaweiSigner
from image_gate.clouds.huawei import signer as sig

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "huawei" / "vectors.json").read_text(encoding="utf-8"))


def _signed(vector: dict[str, Any]) -> httpx.Request:
    body = vector["body"].encode() if vector["body"] is not None else None
    request = httpx.Request(vector["method"], vector["url"], headers=vector["headers"], content=body)
    credentials = HuaweiCredentials(ak=vector["ak"], sk=vector["sk"])
    return HuaweiSigner(credentials, clock=lambda: pytest.fail("the vector's X-Sdk-Date must be used")).sign(
        request, credentials
    )


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_published_vector_authorization_and_wire_query(vector: dict[str, Any]) -> None:
    request = _signed(vector)
    assert request.headers["Authorization"] == vector["expected"]["authorization"]
    assert request.url.query.decode() == vector["expected"]["wire_query"]


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS["vectors"] if "canonical_request" in v["expected"]], ids=lambda v: v["name"]
)
def test_published_vector_intermediate_steps(vector: dict[str, Any]) -> None:
    request = httpx.Request(vector["method"], vector["url"], headers=vector["headers"])
    raw_path, _, raw_query = request.url.raw_path.decode().partition("?")
    values = sig.header_values(request.headers.raw)
    signed = sig.signable_headers(values)
    canonical = sig.canonical_request(request.method, raw_path, sig.parse_query(raw_query), values, signed, b"")
    expected = vector["expected"]
    assert canonical == expected["canonical_request"]
    assert hashlib.sha256(canonical.encode()).hexdigest() == expected["hashed_canonical_request"]
    if "string_to_sign" in expected:
        assert sig.string_to_sign(canonical, vector["headers"]["X-Sdk-Date"]) == expected["string_to_sign"]


@pytest.mark.parametrize("case", VECTORS["query_encoding"], ids=lambda v: v["name"])
def test_published_query_encoding(case: dict[str, Any]) -> None:
    pairs = [(name, value) for name, value in case["pairs"]]
    assert sig.canonical_query_string(pairs) == case["expected"]
    # The same pairs given to httpx as params reach the same canonical (and wire) query.
    request = httpx.Request("GET", "https://service.endpoint.myhuaweicloud.com/resources", params=pairs)
    credentials = HuaweiCredentials(ak="AccessKey", sk="SecretKey")
    HuaweiSigner(credentials, clock=lambda: 0.0).sign(request, credentials)
    assert request.url.query.decode() == case["expected"]


def test_signer_adds_sdk_headers_from_credentials_and_clock() -> None:
    credentials = HuaweiCredentials(ak="AccessKey", sk="SecretKey", security_token="tok", project_id="p1")
    request = httpx.Request(
        "GET", "https://hss.cn-north-4.myhuaweicloud.com/v5/p1/x", headers={"Content-Type": "text/plain"}
    )
    HuaweiSigner(credentials, clock=lambda: 1_577_836_800.0).sign(request, credentials)  # 2020-01-01T00:00:00Z
    assert request.headers["X-Sdk-Date"] == "20200101T000000Z"
    assert request.headers["X-Project-Id"] == "p1"
    assert request.headers["X-Security-Token"] == "tok"
    assert request.headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    parsed = sig.parse_authorization(request.headers["Authorization"])
    assert parsed.signed_headers == (
        "content-type",
        "host",
        "x-project-id",
        "x-sdk-content-sha256",
        "x-sdk-date",
        "x-security-token",
    )


def test_sync_client_signs_with_fixed_credentials() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    credentials = HuaweiCredentials(ak="AccessKey", sk="SecretKey")
    with httpx.Client(
        transport=httpx.MockTransport(handler), auth=HuaweiSigner(credentials, clock=lambda: 0.0)
    ) as client:
        client.get("https://h.example.com/a", params={"b": "x y", "a": "1"})
    assert seen[0].url.query == b"a=1&b=x%20y"
    assert seen[0].headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=")


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("HMAC-SHA256 Access=a, SignedHeaders=host, Signature=s", "algorithm is not SDK-HMAC-SHA256"),
        ("SDK-HMAC-SHA256 Access=a, Signature=s", "has no SignedHeaders"),
        ("SDK-HMAC-SHA256 Access=a, SignedHeaders=x-sdk-date;host, Signature=s", "sorted"),
        ("SDK-HMAC-SHA256 Access=a, SignedHeaders=Host, Signature=s", "lowercase"),
        ("SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=s", "is not 'Access="),
        ("SDK-HMAC-SHA256", "is not 'Access="),
    ],
)
def test_parse_authorization_rejects_ill_formed(value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        sig.parse_authorization(value)


def test_sdk_date_round_trip() -> None:
    assert sig.parse_sdk_date("20191115T033655Z") == 1_573_789_015.0
    assert sig.format_sdk_date(sig.parse_sdk_date("20191115T033655Z")) == "20191115T033655Z"
    with pytest.raises(ValueError, match="does not match format"):
        sig.parse_sdk_date("2019-11-15T03:36:55Z")


# -- agreement with the official SDK on generated requests ------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_HEADER_VALUE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=16)
_HEADER_NAME = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=10
).filter(
    lambda name: (
        name.lower()
        not in {
            "host",
            "authorization",
            "x-sdk-date",
            "x-security-token",
            "x-project-id",
            "content-type",
            "x-sdk-content-sha256",
        }
        and name.lower() not in sig._UNSIGNED_HEADERS
    )
)
_SAFE_IN_PATH = "-._~!$&'()*+,;=:@"


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    segments = draw(st.lists(_TEXT, min_size=1, max_size=4))
    keep = draw(st.sampled_from(["", "~", _SAFE_IN_PATH]))
    path = "/" + "/".join(quote(segment, safe=keep) for segment in segments)
    names = draw(st.lists(_HEADER_NAME, max_size=4, unique_by=str.lower))
    headers = {name: draw(_HEADER_VALUE) for name in names}
    content_type = draw(st.sampled_from([None, "application/json", "application/json;charset=utf8", "text/plain"]))
    if content_type:
        headers["Content-Type"] = content_type
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])),
        "host": draw(st.sampled_from(["hss.cn-north-4.myhuaweicloud.com", "127.0.0.1:8443"])),
        "path": path,
        "query": draw(st.lists(st.tuples(_TEXT, _TEXT), max_size=6)),
        "headers": headers,
        "body": draw(st.one_of(st.none(), st.binary(max_size=64))),
        "ak": draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20)),
        "sk": draw(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)),
        "token": draw(st.one_of(st.none(), st.text("abcdefXYZ0123456789+/=", min_size=1, max_size=40))),
        "project_id": draw(st.one_of(st.none(), st.text("0123456789abcdef", min_size=32, max_size=32))),
        "epoch": draw(st.integers(min_value=0, max_value=4_102_444_800)),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests())
def test_agrees_with_official_sdk_signer(case: dict[str, Any]) -> None:
    ours = httpx.Request(
        case["method"],
        f"https://{case['host']}{case['path']}",
        params=case["query"],
        headers={name: value.encode("utf-8") for name, value in case["headers"].items()},
        content=case["body"],
    )
    wire_path = ours.url.raw_path.decode().partition("?")[0]  # the path as httpx will send it
    credentials = HuaweiCredentials(
        ak=case["ak"], sk=case["sk"], security_token=case["token"], project_id=case["project_id"]
    )
    HuaweiSigner(credentials, clock=lambda: float(case["epoch"])).sign(ours, credentials)

    sdk_credentials = BasicCredentials(case["ak"], case["sk"], case["project_id"])
    if case["token"]:
        sdk_credentials = sdk_credentials.with_security_token(case["token"])
    theirs = SdkRequest(
        method=case["method"],
        schema="https",
        host=case["host"],
        resource_path=wire_path,
        query_params=list(case["query"]),
        header_params={**case["headers"], "X-Sdk-Date": sig.format_sdk_date(case["epoch"])},
        body=case["body"] or "",
    )
    sdk_credentials.sign_request(theirs)  # adds X-Project-Id / X-Security-Token, then Signer(...).sign

    assert ours.headers["Authorization"] == theirs.header_params["Authorization"]
    assert ours.url.raw_path.decode() == theirs.uri


def test_official_signer_class_directly_on_vector_one() -> None:
    vector = VECTORS["vectors"][0]
    request = SdkRequest(
        method="GET",
        schema="https",
        host="service.region.example.com",
        resource_path="/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
        query_params=[("limit", 2), ("marker", "13551d6b-755d-4757-b956-536f674975c0")],
        header_params=dict(vector["headers"]),
        body="",
    )
    Signer(BasicCredentials(vector["ak"], vector["sk"])).sign(request)
    assert request.header_params["Authorization"] == vector["expected"]["authorization"]
    assert _signed(vector).headers["Authorization"] == request.header_params["Authorization"]
