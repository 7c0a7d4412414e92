"""The official huaweicloudsdkhss v5 client against cloudsim's HSS: the simulator speaks the real wire format.

The SDK is synchronous (``requests``); cloudsim runs in its own thread. HTTPS throughout: the SDK
verifies cloudsim's certificate against the test CA (``HttpConfig.ssl_ca_cert``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkhss.v5 import HssClient, ListImageBasicImageRequest, ListRegistryImagesRequest

from cloudsim.catalogue import Catalogue
from cloudsim.server import SimState, Simulators
from tests.tlsutil import TestPki

CATALOGUE = Catalogue.load()
AKSK = CATALOGUE.huawei_credentials[0]
TEMPORARY = next(c for c in CATALOGUE.huawei_credentials if c.security_token)


@pytest.fixture
def sim(pki: TestPki) -> Iterator[Simulators]:
    state = SimState(catalogue=CATALOGUE, hss_rate=None)
    with Simulators(CATALOGUE, ssl_context=pki.server_context(), state=state) as simulators:
        yield simulators


def sdk_client(sim: Simulators, pki: TestPki, credentials: BasicCredentials) -> Any:
    config = HttpConfig.get_default_config()
    config.ssl_ca_cert = str(pki.ca_file)
    config.timeout = (5, 10)
    return (
        HssClient.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoints([sim.hss_url])
        .build()
    )


def list_api(client: Any, **query: Any) -> Any:
    return client.list_registry_images(
        ListRegistryImagesRequest(image_type="private_image", namespace="demo", limit=200, **query)
    )


def basic_image(client: Any, row: Any, **paging: int) -> Any:
    """The SDK's ListImageBasicImage for a row of ListRegistryImages (HSS needs all four names)."""
    request = ListImageBasicImageRequest(
        region="cn-north-4",
        image_id=row.image_id,
        image_type="private_image",
        namespace=row.namespace,
        image_name=row.image_name,
        image_version=row.image_version,
        **paging,
    )
    return client.list_image_basic_image(request)


def test_sdk_lists_images_and_reads_the_base_image(sim: Simulators, pki: TestPki) -> None:
    client = sdk_client(sim, pki, BasicCredentials(AKSK.ak, AKSK.sk, AKSK.project_id))
    listed = list_api(client, image_name="api", image_version="1.4.2")
    rows = {(row.image_name, row.image_version): row for row in listed.data_list}
    assert ("api", "1.4.2") in rows  # and api-gateway:1.4.2, since the filters are loose
    assert listed.total_num == len(listed.data_list)
    row = rows[("api", "1.4.2")]

    basic = basic_image(client, row, offset=0, limit=10)
    assert basic.total_num == 1
    assert (basic.data_list[0].os_name, basic.data_list[0].os_version) == ("Ubuntu", "22.04")
    assert basic.data_list[0].layer_digest.startswith("sha256:")
    assert sim.state.faults.calls["ListRegistryImages"] == 1
    assert sim.state.faults.calls["ListImageBasicImage"] == 1


def test_sdk_sees_no_base_image_before_the_scan(sim: Simulators, pki: TestPki) -> None:
    client = sdk_client(sim, pki, BasicCredentials(AKSK.ak, AKSK.sk, AKSK.project_id))
    row = list_api(client, image_name="nightly").data_list[0]
    assert row.scan_status == "unscan"
    basic = basic_image(client, row)
    assert basic.total_num == 0
    assert basic.data_list == []


def test_sdk_with_temporary_credentials(sim: Simulators, pki: TestPki) -> None:
    credentials = BasicCredentials(TEMPORARY.ak, TEMPORARY.sk, TEMPORARY.project_id).with_security_token(
        TEMPORARY.security_token
    )
    assert list_api(sdk_client(sim, pki, credentials), image_name="worker").total_num == 1


def test_sdk_wrong_secret_is_refused_with_401(sim: Simulators, pki: TestPki) -> None:
    client = sdk_client(sim, pki, BasicCredentials(AKSK.ak, "not-the-secret", AKSK.project_id))
    with pytest.raises(ClientRequestException) as refused:
        list_api(client, image_name="api")
    assert refused.value.status_code == 401
    assert refused.value.error_code == "APIGW.0301"
    assert refused.value.request_id  # from the X-Request-Id header


def test_sdk_skewed_clock_is_refused_with_401(sim: Simulators, pki: TestPki) -> None:
    sim.state.clock = lambda: time.time() + 20 * 60  # the server's clock runs 20 minutes ahead
    client = sdk_client(sim, pki, BasicCredentials(AKSK.ak, AKSK.sk, AKSK.project_id))
    with pytest.raises(ClientRequestException) as refused:
        list_api(client, image_name="api")
    assert refused.value.status_code == 401
    assert "Signature expired" in refused.value.error_msg


def test_sdk_bad_limit_is_hss_0001(sim: Simulators, pki: TestPki) -> None:
    client = sdk_client(sim, pki, BasicCredentials(AKSK.ak, AKSK.sk, AKSK.project_id))
    with pytest.raises(ClientRequestException) as refused:
        client.list_registry_images(ListRegistryImagesRequest(image_type="private_image", limit=500))
    assert refused.value.status_code == 400
    assert refused.value.error_code == "HSS.0001"
