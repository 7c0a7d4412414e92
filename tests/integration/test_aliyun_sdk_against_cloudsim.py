"""The official SAS SDK against cloudsim: proof that cloudsim speaks Alibaba Cloud's wire format.

``alibabacloud_sas20181203.client.Client`` (ACS3-HMAC-SHA256, signing every
header it sets, including ``user-agent`` and ``accept``) calls cloudsim's SAS
over HTTPS on 127.0.0.1, verifying it with the test CA (``Config.ca``). What
the SDK accepts, and the error codes it reports, are what our client is tested
against in ``test_aliyun_client.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cloudsim.server import Simulators
from tests.tlsutil import TestPki

sas_client = pytest.importorskip("alibabacloud_sas20181203.client")
sas_models = pytest.importorskip("alibabacloud_sas20181203.models")
openapi_models = pytest.importorskip("alibabacloud_tea_openapi.models")
openapi_exceptions = pytest.importorskip("alibabacloud_tea_openapi.exceptions")

KEY_ID = "LTAI5tCloudsimDemoKey01"
SECRET = "cloudsim-demo-aliyun-secret-01"
WEB_DIGEST = "03392debbd9303b79655c064ece94522358e261caa1cb99c340978e1c38a1e08"


@pytest.fixture(autouse=True)
def clean(sim: Simulators) -> Iterator[None]:
    sim.state.faults.reset()
    sim.state.clock = time.time
    yield
    sim.state.clock = time.time


def sdk(sim: Simulators, pki: TestPki, **credentials: Any) -> Any:
    credentials.setdefault("access_key_id", KEY_ID)
    credentials.setdefault("access_key_secret", SECRET)
    config = openapi_models.Config(
        endpoint=sim.sas_url.removeprefix("https://"),
        protocol="https",
        ca=str(pki.ca_file),
        connect_timeout=5000,
        read_timeout=5000,
        **credentials,
    )
    return sas_client.Client(config)


def sts_sdk(sim: Simulators, pki: TestPki, *, security_token: str) -> Any:
    """The SDK with cloudsim's demo STS credential and ``security_token``."""
    return sdk(
        sim,
        pki,
        access_key_id="STS.NTCloudsimDemoSts01",
        access_key_secret="cloudsim-demo-aliyun-sts-secret-01",
        security_token=security_token,
    )


def describe_web_image() -> Any:
    return sas_models.DescribeImageRequest(
        image_region_id="cn-hangzhou",
        image_instance_id="cri-cloudsimdemo0001",
        image_repo_id="crr-cloudsimshopweb1",
        image_tag="2.0",
    )


def test_describe_image_instances(sim: Simulators, pki: TestPki) -> None:
    request = sas_models.DescribeImageInstancesRequest(
        criteria='[{"name":"repoNamespace","value":"shop","logicalExp":"AND"},'
        '{"name":"repoName","value":"web","logicalExp":"AND"},'
        '{"name":"regionId","value":"cn-hangzhou","logicalExp":"AND"}]',
        logical_exp="AND",
        page_size=2,
        current_page=1,
    )
    response = sdk(sim, pki).describe_image_instances(request)
    assert response.status_code == 200
    body = response.body
    assert body.page_info.total_count == 3
    assert body.page_info.count == 2
    rows = body.image_instance_list
    assert [(row.repo_namespace, row.repo_name, row.tag) for row in rows] == [
        ("shop", "web-admin", "1.0"),
        ("shop", "web", "2.0"),
    ]
    assert rows[1].repo_id == "crr-cloudsimshopweb1"
    assert rows[1].instance_id == "cri-cloudsimdemo0001"
    assert rows[1].digest == WEB_DIGEST
    assert body.request_id
    assert sim.state.faults.calls["DescribeImageInstances"] == 1


def test_describe_image(sim: Simulators, pki: TestPki) -> None:
    response = sdk(sim, pki).describe_image(describe_web_image())
    assert response.status_code == 200
    assert response.body.data.digest == WEB_DIGEST  # no sha256: prefix, as documented
    assert response.body.request_id


def test_sts_credentials(sim: Simulators, pki: TestPki) -> None:
    client = sts_sdk(sim, pki, security_token="CAISCloudsimDemoSecurityToken01")
    assert client.describe_image(describe_web_image()).body.data.digest == WEB_DIGEST


def test_wrong_secret_is_signature_does_not_match(sim: Simulators, pki: TestPki) -> None:
    with pytest.raises(openapi_exceptions.ClientException) as caught:
        sdk(sim, pki, access_key_secret="not-the-secret").describe_image(describe_web_image())
    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.status_code == 400
    assert caught.value.request_id


def test_unknown_access_key(sim: Simulators, pki: TestPki) -> None:
    with pytest.raises(openapi_exceptions.ClientException) as caught:
        sdk(sim, pki, access_key_id="LTAI5tNobodyKnowsThis").describe_image(describe_web_image())
    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    assert caught.value.status_code == 404


def test_skewed_clock_is_invalid_timestamp(sim: Simulators, pki: TestPki) -> None:
    # The SDK takes x-acs-date from the real clock; skew the server's instead (the same thing to the check).
    sim.state.clock = lambda: time.time() + 16 * 60
    with pytest.raises(openapi_exceptions.ClientException) as caught:
        sdk(sim, pki).describe_image(describe_web_image())
    assert caught.value.code == "InvalidTimeStamp.Expired"
    assert caught.value.status_code == 400


def test_wrong_security_token(sim: Simulators, pki: TestPki) -> None:
    client = sts_sdk(sim, pki, security_token="CAISSomeOtherToken")
    with pytest.raises(openapi_exceptions.ClientException) as caught:
        client.describe_image(describe_web_image())
    assert caught.value.code == "InvalidSecurityToken.MismatchWithAccessKey"
