"""
The images cloudsim knows, and the credentials it accepts, loaded from YAML.

Format (see ``catalogue.yaml`` for the demo's)::

    credentials:
      huawei:
        - {ak: AK, sk: SK, project_id: 0123..., security_token: null}
      aliyun:
        - {access_key_id: AK, access_key_secret: SECRET, security_token: null}
    images:
      - reference: swr.cn-north-4.myhuaweicloud.com/team/api:1.4.2
        digest: sha256:<64 hex>                # the registry digest of that tag
        huawei:                                # present: HSS knows this image
          image_type: private_image
          scan_status: success
          base_image: {os_name: Ubuntu, os_version: "22.04", layer_digest: "sha256:..."}   # null: not scanned
        aliyun:                                # present: SAS knows this image
          region: cn-hangzhou
          instance_id: cri-...
          repo_id: crr-...

Ids that the clouds generate (HSS ``image_id``, SAS ``ImageId``, ``Uuid``) are
derived from the reference, so they are stable across runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage

__all__ = [
    "AliyunCredential",
    "AliyunImage",
    "Catalogue",
    "CatalogueImage",
    "HuaweiCredential",
    "HuaweiImage",
    "default_catalogue_path",
]


def default_catalogue_path() -> Path:
    return Path(__file__).with_name("catalogue.yaml")


@dataclass(frozen=True, slots=True)
class HuaweiCredential:
    ak: str
    sk: str
    project_id: str
    security_token: str | None = None


@dataclass(frozen=True, slots=True)
class AliyunCredential:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None


@dataclass(frozen=True, slots=True)
class HuaweiImage:
    image_id: str
    image_type: str = "private_image"
    scan_status: str = "success"
    base_image: BaseImage | None = None


@dataclass(frozen=True, slots=True)
class AliyunImage:
    region: str
    instance_id: str
    repo_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class CatalogueImage:
    reference: ImageReference
    digest: str
    huawei: HuaweiImage | None = None
    aliyun: AliyunImage | None = None


@dataclass(slots=True)
class Catalogue:
    huawei_credentials: list[HuaweiCredential] = field(default_factory=list)
    aliyun_credentials: list[AliyunCredential] = field(default_factory=list)
    images: list[CatalogueImage] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalogue:
        with open(path or default_catalogue_path(), encoding="utf-8") as stream:
            return cls.from_dict(yaml.safe_load(stream) or {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalogue:
        credentials = data.get("credentials") or {}
        return cls(
            huawei_credentials=[HuaweiCredential(**item) for item in credentials.get("huawei") or []],
            aliyun_credentials=[AliyunCredential(**item) for item in credentials.get("aliyun") or []],
            images=[_read_image(item) for item in data.get("images") or []],
        )

    def huawei_credential(self, ak: str) -> HuaweiCredential | None:
        return next((c for c in self.huawei_credentials if c.ak == ak), None)

    def aliyun_credential(self, access_key_id: str) -> AliyunCredential | None:
        return next((c for c in self.aliyun_credentials if c.access_key_id == access_key_id), None)

    def huawei_images(self) -> list[CatalogueImage]:
        return [image for image in self.images if image.huawei is not None]

    def aliyun_images(self) -> list[CatalogueImage]:
        return [image for image in self.images if image.aliyun is not None]


def _stable_id(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _read_image(item: Mapping[str, Any]) -> CatalogueImage:
    reference = ImageReference.parse(item["reference"])
    digest = str(item["digest"])
    huawei = item.get("huawei")
    aliyun = item.get("aliyun")
    return CatalogueImage(
        reference=reference,
        digest=digest,
        huawei=None
        if huawei is None
        else HuaweiImage(
            image_id=str(huawei.get("image_id") or _stable_id(f"hss:{reference}", 32)),
            image_type=str(huawei.get("image_type", "private_image")),
            scan_status=str(huawei.get("scan_status", "success")),
            base_image=BaseImage(**huawei["base_image"]) if huawei.get("base_image") else None,
        ),
        aliyun=None
        if aliyun is None
        else AliyunImage(
            region=str(aliyun["region"]),
            instance_id=str(aliyun["instance_id"]),
            repo_id=str(aliyun["repo_id"]),
            image_id=_stable_id(f"acr:{reference}", 64),
        ),
    )
