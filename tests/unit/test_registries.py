"""The registry mapping: which registry goes to which cloud, and how."""

from pathlib import Path

import pytest

from image_gate.core.images import ImageReference
from image_gate.facts.registries import AcrLocation, ConfigError, HssLocation, RegistryMapping


@pytest.mark.parametrize(
    ("image", "hss", "acr"),
    [
        ("swr.cn-north-4.myhuaweicloud.com/org/app:1", HssLocation("cn-north-4", "private_image"), None),
        ("swr.eu-west-101.myhuaweicloud.eu/org/app:1", None, None),
        ("shop-registry.cn-hangzhou.cr.aliyuncs.com/ns/app:1", None, AcrLocation("cn-hangzhou")),
        ("shop-registry-vpc.cn-hangzhou.cr.aliyuncs.com/ns/app:1", None, AcrLocation("cn-hangzhou")),
        ("crpi-abc123.cn-beijing.personal.cr.aliyuncs.com/ns/app:1", None, AcrLocation("cn-beijing")),
        ("registry.cn-shanghai.aliyuncs.com/ns/app:1", None, AcrLocation("cn-shanghai")),
        ("registry-intl.ap-southeast-1.aliyuncs.com/ns/app:1", None, AcrLocation("ap-southeast-1")),
        ("nginx:1.27", None, None),
        ("evil.com/swr.cn-north-4.myhuaweicloud.com/app:1", None, None),
    ],
)
def test_default_mapping(image: str, hss: HssLocation | None, acr: AcrLocation | None) -> None:
    mapping = RegistryMapping.default()
    reference = ImageReference.parse(image)
    assert (mapping.hss_location(reference), mapping.acr_location(reference)) == (hss, acr)


def test_a_mapping_file_with_explicit_regions_and_ids(tmp_path: Path) -> None:
    config = tmp_path / "registries.yaml"
    config.write_text(
        "huawei:\n"
        "  endpoint: https://hss.internal:8443\n"
        "  registries:\n"
        "    - {host: harbor.example.com, region: ap-southeast-1, projectId: p1, imageType: harbor}\n"
        "aliyun:\n"
        "  site: international\n"
        "  registries:\n"
        "    - {host: images.shop.example, region: eu-central-1, instanceId: cri-123}\n"
    )
    mapping = RegistryMapping.load(config)
    assert mapping.huawei_endpoint == "https://hss.internal:8443"
    assert mapping.aliyun_site == "international"
    harbor = ImageReference.parse("harbor.example.com/team/app:1")
    assert mapping.hss_location(harbor) == HssLocation("ap-southeast-1", "harbor", project_id="p1")
    assert mapping.hss_location(ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/a/b")) is None
    custom = ImageReference.parse("images.shop.example/ns/app:1")
    assert mapping.acr_location(custom) == AcrLocation("eu-central-1", instance_id="cri-123")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("huawei: [1]\n", "huawei: must be a mapping, not list"),
        ("aliyun:\n  registries:\n    - {region: x}\n", "aliyun.registries[0].host: is required"),
        (
            "huawei:\n  registries:\n    - {host: 'https://swr.x/'}\n",
            "huawei.registries[0].host: must be a registry host such as swr.cn-north-4.myhuaweicloud.com, not 'https://swr.x/'",
        ),
        (
            "huawei:\n  registries:\n    - {host: a, imageType: local_image}\n",
            "huawei.registries[0].imageType: must be one of private_image, shared_image, instance_image, cicd, harbor, "
            "not 'local_image'",
        ),
        ("aliyun:\n  endpoint: tds.aliyuncs.com\n", "aliyun.endpoint: must be an http(s) URL, not 'tds.aliyuncs.com'"),
        ("gcp: {}\n", "top level: unknown field(s) gcp; expected aliyun, huawei"),
        ("huawei: {registries: [}\n", "not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "registries.yaml"
    config.write_text(content)
    with pytest.raises(ConfigError) as caught:
        RegistryMapping.load(config)
    assert str(caught.value).startswith(f"{config}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "image",
    [
        "SWR.cn-north-4.myhuaweicloud.com/org/app:1",
        "Swr.Cn-North-4.MyHuaweiCloud.com/org/app:1",
        "swr.cn-north-4.myhuaweicloud.com:443/org/app:1",
    ],
)
def test_every_spelling_of_a_host_maps_like_the_canonical_one(image: str) -> None:
    assert RegistryMapping.default().hss_location(ImageReference.parse(image)) == HssLocation(
        "cn-north-4", "private_image"
    )


def test_hosts_in_the_mapping_file_are_canonical_too() -> None:
    mapping = RegistryMapping.from_dict(
        {
            "huawei": {"registries": [{"host": "Harbor.Example.com:443", "region": "ap-southeast-1"}]},
            "aliyun": {"registries": [{"host": "index.docker.io", "region": "cn-hangzhou"}]},
        }
    )
    assert mapping.hss_location(ImageReference.parse("harbor.example.com/team/app:1")) == HssLocation(
        "ap-southeast-1", "private_image"
    )
    assert mapping.acr_location(ImageReference.parse("nginx")) == AcrLocation("cn-hangzhou")
    assert mapping.hss_location(ImageReference.parse("harbor.example.com:8443/team/app:1")) is None
