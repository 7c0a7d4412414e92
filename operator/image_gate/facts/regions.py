"""
Which regions each cloud serves: an image in any other region is "not applicable", and costs no call.

Anyone who can create a pod can name a registry host; ``swr.<anything>.myhuaweicloud.com``
would otherwise send image-gate to ask an HSS endpoint that does not exist, spending a
lookup (and, for a real region with a typo'd image, the quota) on nothing. The default
list for HSS is the regions Huawei Cloud's own HSS SDK knows (``huaweicloudsdkhss``
``HssRegion``; a unit test keeps the two equal); Alibaba Cloud's SAS SDK maps only its
China-site regions, while ACR images of every region are answered through the
international site, so no ACR region is refused unless a list is configured.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from image_gate.core.cloudnames import ALIYUN, HUAWEI

__all__ = ["HSS_REGIONS", "RegionAllowList"]

HSS_REGIONS: Final = frozenset(
    {
        "ae-ad-1", "af-north-1", "af-south-1", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
        "ap-southeast-4", "ap-southeast-5", "cn-east-2", "cn-east-3", "cn-east-4", "cn-east-5", "cn-north-1",
        "cn-north-11", "cn-north-12", "cn-north-2", "cn-north-4", "cn-north-9", "cn-south-1", "cn-south-2",
        "cn-south-4", "cn-southwest-2", "cn-southwest-3", "eu-west-101", "la-north-2", "la-south-2", "me-east-1",
        "my-kualalumpur-1", "na-mexico-1", "ru-moscow-1", "sa-brazil-1", "tr-west-1",
    }
)  # fmt: skip
"""The regions of ``huaweicloudsdkhss.v5.region.hss_region.HssRegion``."""

_NAMES: Final = {HUAWEI: "Huawei Cloud HSS", ALIYUN: "Alibaba Cloud Security Center"}


@dataclass(frozen=True, slots=True)
class RegionAllowList:
    """The regions each cloud is asked about; None: every region."""

    huawei: frozenset[str] | None = HSS_REGIONS
    aliyun: frozenset[str] | None = None

    @classmethod
    def of(cls, *, huawei: Iterable[str] | None = None, aliyun: Iterable[str] | None = None) -> RegionAllowList:
        """Explicit lists (None keeps the default for that cloud)."""
        default = cls()
        return cls(
            huawei=frozenset(huawei) if huawei is not None else default.huawei,
            aliyun=frozenset(aliyun) if aliyun is not None else default.aliyun,
        )

    def refusal(self, cloud: str, region: str) -> str | None:
        """Why ``cloud`` is not asked about ``region``, or None when it is served."""
        allowed = self.huawei if cloud == HUAWEI else self.aliyun
        if allowed is None or region in allowed:
            return None
        return f"region {region!r} is not one {_NAMES.get(cloud, cloud)} serves; nothing was asked"
