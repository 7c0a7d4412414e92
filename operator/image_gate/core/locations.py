"""
Where a cloud knows an image: the value types shared by the registry mapping (which decides
them) and the cloud clients (which use them), so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AcrLocation", "AliyunSite", "HssLocation"]

AliyunSite = Literal["china", "international"]
"""Which Security Center site answers: the China site or the international one."""


@dataclass(frozen=True, slots=True)
class HssLocation:
    """Where HSS knows an image: everything the HSS client needs besides the reference."""

    region: str
    image_type: str
    project_id: str | None = None
    enterprise_project_id: str | None = None


@dataclass(frozen=True, slots=True)
class AcrLocation:
    """Where an image lives in Alibaba Cloud Container Registry."""

    region: str
    instance_id: str | None = None
    """The ACR instance id (``cri-...``); when unknown, found with ``DescribeImageInstances``."""
