"""The HSS inventory mirror on a fake clock, paging through the real HSS client and its quota.

The client talks HTTP to a small in-process HSS (an httpx transport answering ``ListRegistryImages``
and ``basic-image`` from a list of rows, as HSS does: fuzzy filters, ``offset``/``limit`` pages), so
the pipeline, the quota limiter and the client's paging are the real ones; only time is fake.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from image_gate.clouds.huawei import HssClient, HuaweiSigner
from image_gate.clouds.huawei.credentials import HuaweiCredentials
from image_gate.clouds.quota import Rate
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Found, NotFound
from image_gate.facts.inventory import HssInventory, InventorySettings, MirroredHss
from image_gate.facts.registries import RegistryMapping
from image_gate.facts.resolver import FactResolver
from tests.faketime import FakeTime

HOST = "swr.cn-north-4.myhuaweicloud.com"
MAPPING = RegistryMapping.default()
WINDOW = 63.0
"""The limiter's window of HSS's 5 calls a minute: 60 s and its 3 s margin."""


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def row(namespace: str, name: str, tag: str, *, digest: str | None = None) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "image_name": name,
        "image_id": hashlib.md5(f"{namespace}/{name}:{tag}".encode()).hexdigest(),  # noqa: S324 -- an id, not a secret
        "image_digest": digest or digest_of(f"{namespace}/{name}:{tag}"),
        "image_version": tag,
        "image_type": "private_image",
        "scan_status": "success",
    }


@dataclass
class ListCall:
    at: float
    params: dict[str, str]

    @property
    def mirror(self) -> bool:
        """The mirror lists a whole namespace; an admission's lookup names the image."""
        return "image_name" not in self.params


@dataclass
class Hss:
    """HSS's two APIs over ``rows``, answering at once; every call is recorded with the fake time."""

    time: FakeTime
    rows: list[dict[str, Any]] = field(default_factory=list)
    lists: list[ListCall] = field(default_factory=list)
    bases: list[float] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    """Namespaces whose listing HSS answers with a 500."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if request.url.path.endswith("/image/registries/images"):
            self.lists.append(ListCall(self.time.now, params))
            if params.get("namespace") in self.failing:
                return httpx.Response(500, json={"error_code": "SYS.0500", "error_msg": "Internal server error."})
            found = [
                r
                for r in self.rows
                if all(params[k] in r[k] for k in ("namespace", "image_name", "image_version") if k in params)
            ]
            offset, limit = int(params.get("offset", "0")), int(params.get("limit", "10"))
            return httpx.Response(200, json={"total_num": len(found), "data_list": found[offset : offset + limit]})
        self.bases.append(self.time.now)
        base = {"os_name": "Ubuntu", "os_version": "22.04", "layer_digest": digest_of("ubuntu")}
        return httpx.Response(200, json={"total_num": 1, "data_list": [base]})

    def mirror_calls(self) -> list[float]:
        return [call.at for call in self.lists if call.mirror]

    def admission_calls(self) -> list[float]:
        return [call.at for call in self.lists if not call.mirror]


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def hss(time: FakeTime) -> Hss:
    return Hss(time)


@pytest.fixture
async def client(hss: Hss, time: FakeTime) -> AsyncIterator[HssClient]:
    signer = HuaweiSigner(HuaweiCredentials(ak="AKTESTINVENTORY00001", sk="sk-inventory", project_id="p1"))
    async with HssClient(
        signer, transport=httpx.MockTransport(hss.handle), clock=time, sleep=time.sleep, rate=Rate(5, 60.0)
    ) as hss_client:
        yield hss_client


def mirror(time: FakeTime, client: HssClient, **settings: Any) -> HssInventory[Any]:
    inventory: HssInventory[Any] = HssInventory(MAPPING, InventorySettings(**settings), clock=time, sleep=time.sleep)
    inventory.attach(client)
    return inventory


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


async def test_a_namespace_is_paged_200_at_a_time_one_page_per_quota_window(
    time: FakeTime, hss: Hss, client: HssClient
) -> None:
    hss.rows = [row("demo", f"app{n:03}", "1.0") for n in range(450)] + [row("demo-two", "app", "1.0")]
    inventory = mirror(time, client)
    inventory.start(references=lambda: [f"{HOST}/demo/app000:1.0"], on_new=lambda image: None)
    await time.advance(3 * WINDOW)
    inventory.stop()

    pages = [call.params for call in hss.lists]
    assert [(p["namespace"], p["offset"], p["limit"]) for p in pages] == [
        ("demo", "0", "200"),
        ("demo", "200", "200"),
        ("demo", "400", "200"),
    ]
    starts = hss.mirror_calls()
    assert all(later - earlier >= WINDOW for earlier, later in itertools.pairwise(starts))
    location = MAPPING.hss_location(ref(f"{HOST}/demo/app449:1.0"))
    assert location is not None
    found = inventory.answer(ref(f"{HOST}/demo/app449:1.0"), location)
    assert isinstance(found, Found)
    assert found.value.image_id == row("demo", "app449", "1.0")["image_id"]
    # "demo-two" matched HSS's fuzzy filter; it is another namespace, not mirrored.
    assert inventory.answer(ref(f"{HOST}/demo-two/app:1.0"), location) is None
    missing = inventory.answer(ref(f"{HOST}/demo/app:9.9"), location)
    assert isinstance(missing, NotFound)
    assert "HSS has not synced this image" in missing.detail


async def test_the_resolver_needs_no_list_call_for_a_mirrored_image_and_none_for_one_hss_has_not_synced(
    time: FakeTime, hss: Hss, client: HssClient
) -> None:
    hss.rows = [row("demo", "api", "1.4.2"), row("demo", "worker", "3.1.0")]
    inventory = mirror(time, client)
    resolver = FactResolver(MAPPING, MirroredHss(client, inventory), None)
    inventory.start(references=lambda: [f"{HOST}/demo/api:1.4.2"], on_new=lambda image: None)
    await time.advance(1)
    assert len(hss.lists) == 1

    facts = await resolver.resolve(
        ref(f"{HOST}/demo/worker:3.1.0"), base_image=True, digest=False, deadline=time.deadline(3)
    )
    assert isinstance(facts.base_image, Found)
    assert facts.hss_image_id == row("demo", "worker", "3.1.0")["image_id"]
    unsynced = await resolver.resolve(
        ref(f"{HOST}/demo/new:1.0"), base_image=True, digest=False, deadline=time.deadline(3)
    )
    assert isinstance(unsynced.base_image, NotFound)
    assert "HSS has not synced this image" in unsynced.base_image.detail
    assert len(hss.lists) == 1, "both answered from the mirror"
    assert len(hss.bases) == 1, "the base image is still HSS's answer"

    # Once the walk is older than found_for (and not walked again: the mirror is stopped), HSS is asked.
    inventory.stop()
    await time.advance(InventorySettings().found_for)
    await resolver.resolve(ref(f"{HOST}/demo/api:1.4.2"), base_image=True, digest=False, deadline=time.deadline(3))
    assert len(hss.admission_calls()) == 1
    await resolver.aclose()


async def test_an_admission_miss_waits_at_most_one_quota_slot_longer_while_the_mirror_pages(
    time: FakeTime, hss: Hss, client: HssClient
) -> None:
    # 4,000 images: 20 pages, more than the test's 15 minutes allow at one page a window.
    hss.rows = [row("big", f"img{n:04}", "1") for n in range(4000)] + [row("team", f"svc{n}", "1") for n in range(40)]
    # Misses (images of a namespace nobody mirrors): bursts that fill the quota, and single ones between.
    schedule = [10.0] * 6 + [100.0, 130.0, 131.0] + [300.0] * 5 + [420.0, 500.0, 505.0, 510.0, 515.0, 520.0, 700.0]

    async def misses(with_mirror: bool) -> list[float]:
        hss.lists.clear()
        inventory = mirror(time, client)
        if with_mirror:
            inventory.start(references=lambda: [f"{HOST}/big/img0000:1"], on_new=lambda image: None)
        started = time.now
        tasks = []
        for n, at in enumerate(schedule):
            await time.advance(started + at - time.now)
            image = ref(f"{HOST}/team/svc{n}:1")
            location = MAPPING.hss_location(image)
            assert location is not None
            tasks.append(asyncio.ensure_future(client.find_image(image, location, deadline=time.deadline(600))))
        await time.advance(started + 15 * 60 - time.now)
        inventory.stop()
        assert all(isinstance(task.result(), Found) for task in tasks)
        return [at - started for at in hss.admission_calls()]

    alone = await misses(with_mirror=False)
    await time.advance(2 * WINDOW)  # the first run's calls leave the window
    shared = await misses(with_mirror=True)
    mirror_calls = hss.mirror_calls()

    assert len(mirror_calls) >= 5, "the mirror paged between the bursts"
    # The mirror never holds more than one slot of any window ...
    assert all(later - earlier >= WINDOW for earlier, later in itertools.pairwise(mirror_calls))
    # ... HSS's quota holds for everybody together ...
    every = sorted(call.at for call in hss.lists)
    assert all(every[i + 5] - every[i] >= 60.0 for i in range(len(every) - 5))
    # ... and each miss starts at most one slot (a window) later than it would without the mirror.
    delays = [with_ - without for with_, without in zip(sorted(shared), sorted(alone), strict=True)]
    assert max(delays) <= WINDOW, delays
    assert min(delays) >= 0.0


async def test_new_tags_and_tags_pushed_again_are_handed_on_after_the_baseline_walk(
    time: FakeTime, hss: Hss, client: HssClient
) -> None:
    hss.rows = [row("demo", "api", "1.0"), row("demo", "api", "1.1"), row("demo", "web", "2.0")]
    found: list[ImageReference] = []
    inventory = mirror(time, client, rewalk_after=120.0)
    inventory.start(references=lambda: [f"{HOST}/demo/api:1.0"], on_new=found.append)
    await time.advance(1)
    assert found == [], "a leader's first walk is its baseline"

    hss.rows.append(row("demo", "api", "1.2"))
    hss.rows[1] = row("demo", "api", "1.1", digest=digest_of("pushed again"))
    await time.advance(130)
    inventory.stop()
    assert len(hss.lists) == 2
    assert sorted(str(image) for image in found) == [f"{HOST}/demo/api:1.1", f"{HOST}/demo/api:1.2"]


async def test_the_mirror_takes_no_slot_a_waiting_lookup_needs(time: FakeTime, hss: Hss, client: HssClient) -> None:
    hss.rows = [row("demo", "api", "1.0")] + [row("team", f"svc{n}", "1") for n in range(5)]
    images = [ref(f"{HOST}/team/svc{n}:1") for n in range(5)]
    location = MAPPING.hss_location(images[0])
    assert location is not None
    await asyncio.gather(*(client.find_image(image, location, deadline=time.deadline(5)) for image in images))
    inventory = mirror(time, client)
    inventory.start(references=lambda: [f"{HOST}/demo/api:1.0"], on_new=lambda image: None)
    await time.advance(30)
    assert hss.mirror_calls() == [], "the window is full: the mirror waits, it does not queue"
    late = asyncio.ensure_future(client.find_image(ref(f"{HOST}/team/svc0:1"), location, deadline=time.deadline(60)))
    await time.advance(WINDOW)
    inventory.stop()
    assert isinstance(late.result(), Found)
    assert hss.admission_calls()[-1] < hss.mirror_calls()[0], "the lookup asked first and was served first"


async def test_a_namespace_that_fails_takes_its_turn_and_blocks_no_other(
    time: FakeTime, hss: Hss, client: HssClient
) -> None:
    hss.rows = [row("broken", "app", "1"), row("fine", "app", "1")]
    hss.failing = {"broken"}
    inventory = mirror(time, client)
    inventory.start(references=lambda: [f"{HOST}/broken/app:1", f"{HOST}/fine/app:1"], on_new=lambda image: None)
    await time.advance(3 * WINDOW)
    inventory.stop()
    assert sorted(call.params["namespace"] for call in hss.lists) == ["broken", "fine"], "one attempt, no retry"
    location = MAPPING.hss_location(ref(f"{HOST}/fine/app:1"))
    assert location is not None
    assert isinstance(inventory.answer(ref(f"{HOST}/fine/app:1"), location), Found)
    assert inventory.answer(ref(f"{HOST}/broken/app:1"), location) is None, "HSS is asked, as without the mirror"


async def test_past_max_images_no_new_namespace_is_walked(time: FakeTime, hss: Hss, client: HssClient) -> None:
    hss.rows = [row("first", f"app{n}", "1") for n in range(3)] + [row("second", "app", "1")]
    inventory = mirror(time, client, max_images=3, rewalk_after=2 * WINDOW)
    references = [f"{HOST}/first/app0:1"]
    inventory.start(references=lambda: references, on_new=lambda image: None)
    await time.advance(1)
    references.append(f"{HOST}/second/app:1")
    await time.advance(4 * WINDOW)
    inventory.stop()
    walked = [call.params["namespace"] for call in hss.lists]
    assert set(walked) == {"first"}, "the namespace already held is kept fresh; no new one fits"
    assert len(walked) >= 2


def test_settings_refuse_values_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="call_every"):
        InventorySettings(call_every=0)
    with pytest.raises(ValueError, match="max_pages_per_walk"):
        InventorySettings(max_pages_per_walk=0)
