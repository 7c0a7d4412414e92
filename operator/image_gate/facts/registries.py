"""
The registry mapping: which registry hosts are looked up in which cloud, and how.

It is a small YAML file (``--config`` / ``IMAGE_GATE_CONFIG``)::

    huawei:
      endpoint: ""                          # optional; default https://hss.{region}.myhuaweicloud.com
      registries:
        - host: "swr.*.myhuaweicloud.com"   # exact host, or a glob (* within one DNS label)
          region: ""                        # default: from the host, swr.{region}.myhuaweicloud.com
          projectId: ""                     # default: HUAWEICLOUD_SDK_PROJECT_ID, or IAM's project of the region
          imageType: private_image          # private_image | shared_image | instance_image | cicd | harbor
          enterpriseProjectId: ""           # optional; "all_granted_eps" to search all enterprise projects
    aliyun:
      endpoint: ""                          # optional; default by site
      site: china                           # china (tds.cn-shanghai.aliyuncs.com) | international
      registries:
        - host: "*.*.cr.aliyuncs.com"         # e.g. myinstance-registry.cn-hangzhou.cr.aliyuncs.com
          region: ""                        # default: from the host
          instanceId: ""                    # the ACR instance id (cri-...), when known

Without a file, the defaults below cover the public SWR and ACR hosts. An image
whose registry no mapping covers is "not applicable" for that cloud, never an
error: image-gate does not ask Huawei about Docker Hub.

The first matching entry wins, so list specific hosts before globs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from image_gate.core.images import ImageReference, canonical_host
from image_gate.core.locations import AcrLocation, AliyunSite, HssLocation

__all__ = [
    "AcrLocation",
    "AliyunRegistry",
    "ConfigError",
    "HssLocation",
    "HuaweiRegistry",
    "RegistryMapping",
]

R = TypeVar("R")
E = TypeVar("E", "HuaweiRegistry", "AliyunRegistry")

HSS_IMAGE_TYPES = ("private_image", "shared_image", "instance_image", "cicd", "harbor")

# Where the region sits in the public registry hosts of each cloud.
_HUAWEI_REGION_HOSTS = (
    re.compile(r"^swr\.(?P<region>[a-z0-9-]+)\.myhuaweicloud\.(?:com|eu)$"),
    re.compile(r"^[a-z0-9-]+\.swr\.(?P<region>[a-z0-9-]+)\.myhuaweicloud\.(?:com|eu)$"),
)
_ALIYUN_REGION_HOSTS = (
    re.compile(r"^.+?-registry(?:-vpc)?\.(?P<region>[a-z0-9-]+)\.cr\.aliyuncs\.com$"),
    re.compile(r"^crpi-[a-z0-9]+(?:-vpc)?\.(?P<region>[a-z0-9-]+)\.personal\.cr\.aliyuncs\.com$"),
    re.compile(r"^registry(?:-intl)?(?:-vpc)?\.(?P<region>[a-z0-9-]+)\.aliyuncs\.com$"),
)


class ConfigError(ValueError):
    """Raised when the registry mapping file is unreadable or has an invalid field.

    The message names the file and the field, so that start-up fails with
    something a human can fix.
    """


@dataclass(frozen=True, slots=True)
class HuaweiRegistry:
    host: str
    region: str | None = None
    project_id: str | None = None
    image_type: str = "private_image"
    enterprise_project_id: str | None = None


@dataclass(frozen=True, slots=True)
class AliyunRegistry:
    host: str
    region: str | None = None
    instance_id: str | None = None


DEFAULT_HUAWEI_REGISTRIES = (HuaweiRegistry(host="swr.*.myhuaweicloud.com"),)
DEFAULT_ALIYUN_REGISTRIES = (
    AliyunRegistry(host="*.*.cr.aliyuncs.com"),
    AliyunRegistry(host="*.*.personal.cr.aliyuncs.com"),
    AliyunRegistry(host="registry.*.aliyuncs.com"),
    AliyunRegistry(host="registry-vpc.*.aliyuncs.com"),
    AliyunRegistry(host="registry-intl.*.aliyuncs.com"),
)


@dataclass(frozen=True, slots=True)
class RegistryMapping:
    """The parsed mapping. Build it with `load`, `from_dict`, or `default`."""

    huawei: tuple[HuaweiRegistry, ...] = DEFAULT_HUAWEI_REGISTRIES
    aliyun: tuple[AliyunRegistry, ...] = DEFAULT_ALIYUN_REGISTRIES
    huawei_endpoint: str | None = None
    aliyun_endpoint: str | None = None
    aliyun_site: AliyunSite = "china"
    source: str = field(default="<defaults>", compare=False)
    _hss_answers: dict[str, HssLocation | None] = field(default_factory=dict, compare=False, repr=False)
    _acr_answers: dict[str, AcrLocation | None] = field(default_factory=dict, compare=False, repr=False)
    """Answers by registry: they depend on the registry alone, and every review asks."""

    @classmethod
    def default(cls) -> RegistryMapping:
        return cls()

    @classmethod
    def load(cls, path: str | Path) -> RegistryMapping:
        """Read and validate a mapping file; raise `ConfigError` naming the file and field."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the registry mapping: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        return cls.from_dict(data if data is not None else {}, source=source)

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<config>") -> RegistryMapping:
        reader = _Reader(source)
        root = reader.mapping(data, "", allowed={"huawei", "aliyun"})
        huawei = reader.mapping(root.get("huawei", {}), "huawei", allowed={"endpoint", "registries"})
        aliyun = reader.mapping(root.get("aliyun", {}), "aliyun", allowed={"endpoint", "site", "registries"})

        huawei_registries = _read_registries(reader, huawei, "huawei", _read_huawei_registry, DEFAULT_HUAWEI_REGISTRIES)
        aliyun_registries = _read_registries(reader, aliyun, "aliyun", _read_aliyun_registry, DEFAULT_ALIYUN_REGISTRIES)

        site = reader.string(aliyun.get("site"), "aliyun.site") or "china"
        if site not in ("china", "international"):
            raise ConfigError(f"{source}: aliyun.site: must be 'china' or 'international', not {site!r}")
        return cls(
            huawei=huawei_registries,
            aliyun=aliyun_registries,
            huawei_endpoint=reader.url(huawei.get("endpoint"), "huawei.endpoint"),
            aliyun_endpoint=reader.url(aliyun.get("endpoint"), "aliyun.endpoint"),
            aliyun_site="china" if site == "china" else "international",
            source=source,
        )

    def hss_location(self, image: ImageReference) -> HssLocation | None:
        """Where HSS knows this image, or None when no mapping covers its registry (or region)."""
        if image.registry not in self._hss_answers:
            _bound(self._hss_answers)
            self._hss_answers[image.registry] = self._find_hss_location(image)
        return self._hss_answers[image.registry]

    def acr_location(self, image: ImageReference) -> AcrLocation | None:
        """Where ACR holds this image, or None when no mapping covers its registry (or region)."""
        if image.registry not in self._acr_answers:
            _bound(self._acr_answers)
            self._acr_answers[image.registry] = self._find_acr_location(image)
        return self._acr_answers[image.registry]

    def _find_hss_location(self, image: ImageReference) -> HssLocation | None:
        mapped = _first_entry(self.huawei, image, _HUAWEI_REGION_HOSTS)
        if mapped is None:
            return None
        entry, region = mapped
        return HssLocation(
            region=region,
            image_type=entry.image_type,
            project_id=entry.project_id,
            enterprise_project_id=entry.enterprise_project_id,
        )

    def _find_acr_location(self, image: ImageReference) -> AcrLocation | None:
        mapped = _first_entry(self.aliyun, image, _ALIYUN_REGION_HOSTS)
        if mapped is None:
            return None
        entry, region = mapped
        return AcrLocation(region=region, instance_id=entry.instance_id)


_MAX_REMEMBERED = 1024
"""Registries come from untrusted pod specs: remember a bounded number of answers."""


def _bound(answers: dict[str, Any]) -> None:
    if len(answers) >= _MAX_REMEMBERED:
        answers.clear()


def _host_matches(pattern: str, registry: str) -> bool:
    # Both sides canonical (lower case, no :443, Docker Hub as docker.io): a host written
    # "SWR.cn-north-4.myhuaweicloud.com:443" in a pod or in the mapping file is the same registry.
    return _host_regex(pattern).fullmatch(canonical_host(registry)) is not None


@functools.lru_cache(maxsize=256)
def _host_regex(pattern: str) -> re.Pattern[str]:
    # A '*' stands for one DNS label (fnmatch's '*' would also swallow dots),
    # so a pattern covers exactly the hosts it shows: "*.*.cr.aliyuncs.com" is two labels deep.
    # '[^./]*' cannot backtrack across labels, so a hostile host costs linear time.
    return re.compile("".join("[^./]*" if ch == "*" else re.escape(ch) for ch in canonical_host(pattern)))


def _first_entry(
    entries: Sequence[E], image: ImageReference, region_hosts: Sequence[re.Pattern[str]]
) -> tuple[E, str] | None:
    """The first entry whose host matches the image's registry, with its region (given, or read from the host).

    None when no entry matches, and when the first that matches has no region: a later entry is not tried.
    """
    for entry in entries:
        if _host_matches(entry.host, image.registry):
            region = entry.region or _region_from_host(image.host, region_hosts)
            return None if region is None else (entry, region)
    return None


def _region_from_host(host: str, patterns: Sequence[re.Pattern[str]]) -> str | None:
    for pattern in patterns:
        match = pattern.match(host.lower())
        if match:
            return match.group("region")
    return None


def _read_registries(
    reader: _Reader,
    section: Mapping[str, Any],
    cloud: str,
    read_one: Callable[[_Reader, object, str], R],
    default: tuple[R, ...],
) -> tuple[R, ...]:
    """A cloud's ``registries`` list, each entry read by ``read_one``; the default when the key is absent."""
    if "registries" not in section:
        return default
    items = reader.sequence(section.get("registries"), f"{cloud}.registries")
    return tuple(read_one(reader, item, f"{cloud}.registries[{index}]") for index, item in enumerate(items))


def _read_huawei_registry(reader: _Reader, item: object, where: str) -> HuaweiRegistry:
    entry = reader.mapping(item, where, allowed={"host", "region", "projectId", "imageType", "enterpriseProjectId"})
    image_type = reader.string(entry.get("imageType"), f"{where}.imageType") or "private_image"
    if image_type not in HSS_IMAGE_TYPES:
        raise ConfigError(
            f"{reader.source}: {where}.imageType: must be one of {', '.join(HSS_IMAGE_TYPES)}, not {image_type!r}"
        )
    return HuaweiRegistry(
        host=reader.host(entry.get("host"), f"{where}.host"),
        region=reader.string(entry.get("region"), f"{where}.region"),
        project_id=reader.string(entry.get("projectId"), f"{where}.projectId"),
        image_type=image_type,
        enterprise_project_id=reader.string(entry.get("enterpriseProjectId"), f"{where}.enterpriseProjectId"),
    )


def _read_aliyun_registry(reader: _Reader, item: object, where: str) -> AliyunRegistry:
    entry = reader.mapping(item, where, allowed={"host", "region", "instanceId"})
    return AliyunRegistry(
        host=reader.host(entry.get("host"), f"{where}.host"),
        region=reader.string(entry.get("region"), f"{where}.region"),
        instance_id=reader.string(entry.get("instanceId"), f"{where}.instanceId"),
    )


@dataclass(frozen=True, slots=True)
class _Reader:
    """Type-checks YAML values and names the file and field in every complaint."""

    source: str

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where or 'top level'}: {problem}")

    def mapping(self, value: object, where: str, *, allowed: set[str]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a mapping, not {type(value).__name__}")
        unknown = sorted(str(key) for key in value if key not in allowed)
        if unknown:
            raise self.fail(where, f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
        return value

    def sequence(self, value: object, where: str) -> Sequence[object]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list, not {type(value).__name__}")
        return value

    def string(self, value: object, where: str) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {type(value).__name__}")
        return value

    def host(self, value: object, where: str) -> str:
        host = self.string(value, where)
        if host is None:
            raise self.fail(where, "is required")
        if "/" in host or "://" in host:
            raise self.fail(where, f"must be a registry host such as swr.cn-north-4.myhuaweicloud.com, not {host!r}")
        return host

    def url(self, value: object, where: str) -> str | None:
        url = self.string(value, where)
        if url is not None and not url.startswith(("https://", "http://")):
            raise self.fail(where, f"must be an http(s) URL, not {url!r}")
        return url.rstrip("/") if url else None
