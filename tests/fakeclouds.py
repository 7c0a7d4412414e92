"""
Fakes of the two cloud clients, for the fact resolver on a fake clock (the real clients are tested
against cloudsim), and a catalogue they answer from: one image, ``team/app`` at tags v1 and v2,
that a mirror host sends to both clouds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, NotFound, Outcome
from image_gate.facts.registries import AcrLocation, HssLocation, RegistryMapping
from tests.faketime import FakeTime


@dataclass(frozen=True, slots=True)
class FakeRegistryImage:
    image_id: str
    digest: str | None
    tag: str


@dataclass(frozen=True, slots=True)
class FakeRepository:
    region: str
    repo_id: str


DEBIAN = BaseImage(os_name="Debian GNU/Linux", os_version="12", layer_digest="sha256:" + "d" * 64)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@dataclass
class FakeHss:
    """Answers from dicts; each call takes ``latency`` fake seconds and waits for ``gate`` when set."""

    time: FakeTime
    latency: float = 0.0
    gate: asyncio.Event | None = None
    images: dict[str, Outcome[FakeRegistryImage]] = field(default_factory=dict)
    bases: dict[str, Outcome[BaseImage]] = field(default_factory=dict)
    find_calls: list[tuple[float, str]] = field(default_factory=list)
    base_calls: list[tuple[float, str]] = field(default_factory=list)

    async def _delay(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.latency:
            await self.time.sleep(self.latency)

    async def find_image(
        self, image: ImageReference, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[FakeRegistryImage]:
        self.find_calls.append((self.time.now, str(image)))
        await self._delay()
        return self.images.get(str(image), NotFound(f"HSS does not know {image}"))

    async def base_image(
        self, image: FakeRegistryImage, location: HssLocation, *, deadline: Deadline
    ) -> Outcome[BaseImage]:
        self.base_calls.append((self.time.now, image.digest or image.image_id))
        await self._delay()
        return self.bases.get(image.digest or "", NotFound("not scanned yet"))


@dataclass
class FakeSas:
    time: FakeTime
    latency: float = 0.0
    repositories: dict[str, Outcome[FakeRepository]] = field(default_factory=dict)
    digests: dict[tuple[FakeRepository, str], Outcome[str]] = field(default_factory=dict)
    find_calls: list[tuple[float, str]] = field(default_factory=list)
    digest_calls: list[tuple[float, str]] = field(default_factory=list)

    async def find_repository(
        self, image: ImageReference, location: AcrLocation, *, deadline: Deadline
    ) -> Outcome[FakeRepository]:
        self.find_calls.append((self.time.now, image.name))
        if self.latency:
            await self.time.sleep(self.latency)
        return self.repositories.get(image.name, NotFound(f"no repository {image.name}"))

    async def registry_digest(self, repository: FakeRepository, tag: str, *, deadline: Deadline) -> Outcome[str]:
        self.digest_calls.append((self.time.now, tag))
        if self.latency:
            await self.time.sleep(self.latency)
        return self.digests.get((repository, tag), NotFound(f"no tag {tag}"))


# An image both clouds know: a mirror host that the mapping sends to both.
MIRROR = "mirror.example.com"
MAPPING = RegistryMapping.from_dict(
    {
        "huawei": {"registries": [{"host": MIRROR, "region": "cn-north-4"}, {"host": "swr.*.myhuaweicloud.com"}]},
        "aliyun": {
            "registries": [
                {"host": MIRROR, "region": "cn-hangzhou", "instanceId": "cri-1"},
                {"host": "*.*.cr.aliyuncs.com"},
            ]
        },
    }
)
APP_V1 = ImageReference.parse(f"{MIRROR}/team/app:v1")
APP_V2 = ImageReference.parse(f"{MIRROR}/team/app:v2")
REPO = FakeRepository(region="cn-hangzhou", repo_id="crr-1")


def known(hss: FakeHss, sas: FakeSas) -> None:
    """v1 and v2 of team/app are the same image (digest A)."""
    for tag in ("v1", "v2"):
        hss.images[f"{MIRROR}/team/app:{tag}"] = Found(FakeRegistryImage(f"id-{tag}", DIGEST_A, tag))
        sas.digests[(REPO, tag)] = Found(DIGEST_A)
    hss.bases[DIGEST_A] = Found(DEBIAN)
    sas.repositories[f"{MIRROR}/team/app"] = Found(REPO)


@pytest.fixture(name="hss")
def hss_fixture(time: FakeTime) -> FakeHss:
    """An empty fake HSS on the module's clock (tests/unit/conftest.py offers it)."""
    return FakeHss(time)


@pytest.fixture(name="sas")
def sas_fixture(time: FakeTime) -> FakeSas:
    """An empty fake SAS on the module's clock (tests/unit/conftest.py offers it)."""
    return FakeSas(time)
