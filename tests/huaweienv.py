"""The environment a pod would get to reach cloudsim's HSS with its first Huawei account."""

from __future__ import annotations

from cloudsim.server import Simulators

__all__ = ["huawei_sdk_environ"]


def huawei_sdk_environ(sim: Simulators) -> dict[str, str]:
    """The ``HUAWEICLOUD_SDK_*`` variables (AK, SK, project) of the catalogue's first Huawei account."""
    huawei = sim.state.catalogue.huawei_credentials[0]
    return {
        "HUAWEICLOUD_SDK_AK": huawei.ak,
        "HUAWEICLOUD_SDK_SK": huawei.sk,
        "HUAWEICLOUD_SDK_PROJECT_ID": huawei.project_id,
    }
