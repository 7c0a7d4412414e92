"""The environment a pod would get to reach cloudsim with the catalogue's first account of each cloud."""

from __future__ import annotations

from cloudsim.catalogue import Catalogue

__all__ = ["aliyun_sdk_environ", "huawei_sdk_environ"]


def huawei_sdk_environ(catalogue: Catalogue) -> dict[str, str]:
    """The ``HUAWEICLOUD_SDK_*`` variables (AK, SK, project) of the first Huawei account."""
    huawei = catalogue.huawei_credentials[0]
    return {
        "HUAWEICLOUD_SDK_AK": huawei.ak,
        "HUAWEICLOUD_SDK_SK": huawei.sk,
        "HUAWEICLOUD_SDK_PROJECT_ID": huawei.project_id,
    }


def aliyun_sdk_environ(catalogue: Catalogue) -> dict[str, str]:
    """The ``ALIBABA_CLOUD_ACCESS_KEY_*`` variables of the first Alibaba Cloud account."""
    aliyun = catalogue.aliyun_credentials[0]
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": aliyun.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": aliyun.access_key_secret,
    }
