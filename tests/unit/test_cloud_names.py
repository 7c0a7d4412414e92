"""One home for the names of the cloud APIs: the clients export them, the resolver and cloudsim use them."""

from __future__ import annotations

import ast
from pathlib import Path

from cloudsim.catalogue import Catalogue
from cloudsim.server import SimState
from image_gate.clouds import aliyun, huawei
from image_gate.core import cloudnames
from image_gate.facts import resolver

PACKAGE = Path(cloudnames.__file__).parents[1]
API_NAMES = {
    cloudnames.HSS_LIST_IMAGES,
    cloudnames.HSS_BASE_IMAGE,
    cloudnames.SAS_DESCRIBE_IMAGE_INSTANCES,
    cloudnames.SAS_DESCRIBE_IMAGE,
}


def test_the_clients_export_the_names_and_the_resolver_labels_with_them() -> None:
    assert (huawei.CLOUD, huawei.API_LIST_IMAGES, huawei.API_BASE_IMAGE) == (
        "huawei",
        "ListRegistryImages",
        "ListImageBasicImage",
    )
    assert (aliyun.CLOUD, aliyun.API_DESCRIBE_IMAGE_INSTANCES, aliyun.API_DESCRIBE_IMAGE) == (
        "aliyun",
        "DescribeImageInstances",
        "DescribeImage",
    )
    assert (resolver.HUAWEI, resolver.HSS_FIND_API, resolver.HSS_BASE_API) == (
        huawei.CLOUD,
        huawei.API_LIST_IMAGES,
        huawei.API_BASE_IMAGE,
    )
    assert (resolver.ALIYUN, resolver.SAS_FIND_API, resolver.SAS_DIGEST_API) == (
        aliyun.CLOUD,
        aliyun.API_DESCRIBE_IMAGE_INSTANCES,
        aliyun.API_DESCRIBE_IMAGE,
    )


def test_no_module_spells_an_api_name_itself() -> None:
    spelled = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(cloudnames.__file__)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in API_NAMES
    ]
    assert spelled == [], "import the name from image_gate.core.cloudnames (or the client that exports it)"


def test_cloudsim_throttles_at_the_quota_image_gate_paces_itself_by() -> None:
    assert SimState(catalogue=Catalogue.from_dict({})).hss_rate == huawei.DEFAULT_RATE
