"""ImageFact names and the status <-> outcome codec."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from image_gate.core.images import ImageReference
from image_gate.core.locations import AcrLocation, HssLocation
from image_gate.core.outcomes import (
    BadResponse,
    BaseImage,
    Failure,
    Found,
    NotApplicable,
    NotFound,
    Outcome,
    Throttled,
    TimedOut,
    Unauthorized,
    Unavailable,
)
from image_gate.facts.records import (
    HASH_HEX_DIGITS,
    MAX_NAME_LENGTH,
    REQUESTED_BY,
    FactKey,
    FactRecord,
    StoredFact,
    UnreadableRecord,
    fact_name,
    record_from_status,
    shared_base_image,
    spec_of,
    status_of,
    stored_fact,
)

DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HSS = HssLocation(region="ap-southeast-1", image_type="private_image")
ACR = AcrLocation(region="cn-hangzhou", instance_id="cri-abc")
SWR_IMAGE = ImageReference.parse("swr.ap-southeast-1.myhuaweicloud.com/team/app_server:1.2.3")


def test_a_name_is_readable_and_carries_128_bits_of_sha256() -> None:
    name = fact_name("huawei", HSS, SWR_IMAGE)
    assert name.startswith("hss-app-server-1-2-3-")
    assert re.fullmatch(f"[0-9a-f]{{{HASH_HEX_DIGITS}}}", name.rsplit("-", 1)[1])
    assert HASH_HEX_DIGITS * 4 >= 128


def test_a_name_is_deterministic_and_depends_on_cloud_location_and_reference() -> None:
    name = fact_name("huawei", HSS, SWR_IMAGE)
    assert name == fact_name("huawei", HssLocation(region="ap-southeast-1", image_type="private_image"), SWR_IMAGE)
    assert name == FactKey("huawei", HSS, SWR_IMAGE).name
    others = {
        fact_name("huawei", HssLocation(region="ap-southeast-1", image_type="shared_image"), SWR_IMAGE),
        fact_name("huawei", HssLocation("ap-southeast-1", "private_image", project_id="p"), SWR_IMAGE),
        fact_name("huawei", HSS, ImageReference.parse("swr.ap-southeast-1.myhuaweicloud.com/team/app_server:1.2.4")),
        fact_name("aliyun", ACR, SWR_IMAGE),
    }
    assert name not in others
    assert len(others) == 4


def test_a_digest_reference_names_the_digest() -> None:
    image = ImageReference.parse("swr.ap-southeast-1.myhuaweicloud.com/team/app@sha256:" + "ab" * 32)
    assert fact_name("huawei", HSS, image).startswith("hss-app-abababababab-")


references = st.from_regex(
    r"[a-z0-9]{1,20}(\.[a-z]{2,5})?/[a-zA-Z0-9._/-]{1,300}:[A-Za-z0-9_.-]{1,128}", fullmatch=True
)


@given(references)
def test_every_name_is_a_valid_object_name(reference: str) -> None:
    try:
        image = ImageReference.parse(reference)
    except ValueError:
        return
    name = fact_name("aliyun", ACR, image)
    assert len(name) <= MAX_NAME_LENGTH
    assert DNS_1123_SUBDOMAIN.fullmatch(name), name


def test_the_spec_says_what_to_resolve_again() -> None:
    assert spec_of(FactKey("huawei", HSS, SWR_IMAGE)) == {
        "cloud": "huawei",
        "reference": "swr.ap-southeast-1.myhuaweicloud.com/team/app_server:1.2.3",
        "location": {"region": "ap-southeast-1", "imageType": "private_image"},
    }


OUTCOMES: list[Outcome[Any]] = [
    Found(BaseImage("Debian GNU/Linux", "12", "sha256:" + "1" * 64), "req-1"),
    Found("sha256:" + "2" * 64, "req-2"),
    NotFound("HSS has not scanned this image yet", "req-3"),
    NotApplicable("no registry mapping sends docker.io to Huawei HSS"),
    Unauthorized(cloud="huawei", api="ListRegistryImages", detail="bad AK", code="APIGW.0301", request_id="r"),
    Throttled(cloud="huawei", api="ListImageBasicImage", detail="429", retry_after=12.5),
    Throttled(cloud="huawei", api="ListImageBasicImage", detail="429"),
    Unavailable(cloud="aliyun", api="DescribeImage", detail="503"),
    TimedOut(cloud="aliyun", api="DescribeImage", detail="slow"),
    BadResponse(cloud="aliyun", api="DescribeImage", detail="not JSON"),
    Failure(cloud="aliyun", api="DescribeImage", detail="internal error"),
]


@pytest.mark.parametrize(
    "outcome", [o for o in OUTCOMES if not isinstance(o, Unauthorized)], ids=lambda o: type(o).__name__
)
def test_every_outcome_survives_the_round_trip(outcome: Outcome[Any]) -> None:
    record = FactRecord(outcome, observed_at=1_800_000_000.0, expires_at=1_800_000_300.0)
    assert record_from_status(status_of(record)) == record


def test_the_hss_image_id_survives_the_round_trip() -> None:
    record = FactRecord(OUTCOMES[0], observed_at=1_800_000_000.0, expires_at=None, hss_image_id="img-7f3a")
    status = status_of(record)
    assert status["hssImageId"] == "img-7f3a"
    assert record_from_status(status) == record


IDENTITY = "user iam-user-gate (account 0a1b2c3d4e) on arn:aws:iam::123456789012:role/gate via http://169.254.170.23/v1"


@pytest.mark.parametrize(
    "failure",
    [
        Unauthorized(cloud="huawei", api="ListRegistryImages", detail=f"denied: {IDENTITY}", request_id="r-1"),
        Unauthorized(cloud="aliyun", api="DescribeImage", detail=f"no credentials: {IDENTITY}"),
        Unavailable(
            cloud="aliyun",
            api="DescribeImage",
            detail=f"no credentials: {IDENTITY}",
            public_detail="no credentials: image-gate's credential service did not answer usefully",
        ),
    ],
    ids=["unauthorized", "unauthorized-without-request-id", "credential-service-down"],
)
def test_a_stored_failure_carries_only_what_pod_creators_may_read(failure: Failure) -> None:
    status = status_of(FactRecord(failure, observed_at=1_800_000_000.0, expires_at=1_800_000_030.0))
    assert "iam-user-gate" not in str(status)
    assert "arn:aws" not in str(status)
    assert "169.254" not in str(status)
    again = record_from_status(status).outcome
    assert type(again) is type(failure)
    assert isinstance(again, Failure)
    assert (again.cloud, again.api, again.code, again.request_id) == (
        failure.cloud,
        failure.api,
        failure.code,
        failure.request_id,
    )
    # What a denial quotes is what it would have quoted before the fact was stored, and nothing more.
    assert again.public_message == failure.public_message
    assert "iam-user-gate" not in again.message


def test_a_fact_about_a_digest_has_no_expiry() -> None:
    record = FactRecord(OUTCOMES[0], observed_at=1_800_000_000.0, expires_at=None)
    status = status_of(record)
    assert "expiresAt" not in status
    assert record_from_status(status).fresh(now=4_000_000_000.0)


def test_the_status_reads_like_the_printer_columns_want() -> None:
    status = status_of(FactRecord(OUTCOMES[0], observed_at=1_800_000_000.0, expires_at=None))
    assert status == {
        "state": "Found",
        "observedAt": "2027-01-15T08:00:00Z",
        "baseImage": {"osName": "Debian GNU/Linux", "osVersion": "12", "layerDigest": "sha256:" + "1" * 64},
        "requestId": "req-1",
    }


def test_long_messages_are_cut_so_a_fact_stays_small() -> None:
    status = status_of(FactRecord(NotFound("x" * 10_000), observed_at=0.0, expires_at=30.0))
    assert len(status["message"]) == 512


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"state": "Found", "observedAt": "2027-01-15T08:00:00Z"},
        {"state": "Exploded", "observedAt": "2027-01-15T08:00:00Z"},
        {"state": "Throttled", "observedAt": "2027-01-15T08:00:00Z"},
        {"state": "NotFound", "observedAt": "yesterday"},
    ],
)
def test_a_status_this_version_did_not_write_is_unreadable(status: dict[str, Any]) -> None:
    with pytest.raises(UnreadableRecord):
        record_from_status(status)


# -- what many facts share is held once


def _parsed(value: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of ``value`` as a watch event brings it: every string a new object."""
    parsed: dict[str, Any] = json.loads(json.dumps(value))
    return parsed


def _fact_body(n: int, *, os_version: str = "12", namespace: str = "shop") -> dict[str, Any]:
    record = FactRecord(
        Found(BaseImage("Debian GNU/Linux", os_version, "sha256:" + "b" * 64), f"req-{n}"), observed_at=0, expires_at=1
    )
    return _parsed(
        {
            "metadata": {"name": f"hss-app{n}", "annotations": {REQUESTED_BY: namespace}},
            "spec": {"cloud": "huawei", "reference": f"swr.example.com/app{n}:1"},
            "status": status_of(record),
        }
    )


def _found(stored: StoredFact) -> Found[Any]:
    assert stored.record is not None
    outcome = stored.record.outcome
    assert isinstance(outcome, Found)
    return outcome


def test_facts_with_the_same_base_image_share_one_object_and_repeated_words() -> None:
    first, second = stored_fact(_fact_body(1)), stored_fact(_fact_body(2))
    base = _found(first).value
    assert base == BaseImage("Debian GNU/Linux", "12", "sha256:" + "b" * 64)
    assert _found(second).value is base
    assert _found(first).request_id == "req-1"
    assert _found(second).request_id == "req-2"
    assert first.cloud is second.cloud
    assert first.requested_by is second.requested_by
    other = _found(stored_fact(_fact_body(3, os_version="13"))).value
    assert other.os_version == "13"
    assert other.os_name is base.os_name


def test_the_shared_base_images_are_bounded_and_start_over_when_full() -> None:
    images = [shared_base_image("Ubuntu", "22.04", f"sha256:{n:064x}") for n in range(5000)]
    assert [image.layer_digest for image in images] == [f"sha256:{n:064x}" for n in range(5000)]
    assert shared_base_image("Ubuntu", "22.04", f"sha256:{4999:064x}") is images[-1]
    assert shared_base_image("Ubuntu", "22.04", f"sha256:{0:064x}") == images[0]  # forgotten, still equal


def test_words_of_a_stored_failure_are_shared() -> None:
    failure = Throttled(cloud="huawei", api="ListRegistryImages", detail="slow down", code="APIGW.0308")
    status = status_of(FactRecord(failure, observed_at=0, expires_at=1))
    first, second = record_from_status(_parsed(status)), record_from_status(_parsed(status))
    assert first == second
    assert isinstance(first.outcome, Throttled)
    assert isinstance(second.outcome, Throttled)
    assert first.outcome.api is second.outcome.api
    assert first.outcome.code is second.outcome.code
    assert first.outcome.detail is second.outcome.detail
