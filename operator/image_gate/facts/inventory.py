"""
The leader's mirror of HSS's image inventory: image ids without a per-admission list call.

Every cold HSS fact costs two calls, ``ListRegistryImages`` to find HSS's image
id and ``basic-image`` for the base OS, each within HSS's 5 a minute. The
first answers the same question for every tag of a namespace, so the leader
reads the namespaces it knows of (those of the cluster's HSS ImageFacts) page
by page (200 images a page, HSS's largest) into memory, and the resolver asks
the mirror first (`MirroredHss`):

* the image is listed, on a page read less than ``found_for`` ago (the tag
  TTL: a tag can be pushed again): its row is the answer, no call (so a tag
  pushed again reaches a stored fact up to ``found_for`` later than a list
  call would have seen it; HSS's own sync of the registry lags more);
* the image is not in the namespace's last complete walk, which ended less
  than ``not_synced_for`` ago and took no longer than that itself (so no page
  of it is older than twice that): "HSS has not synced this image", no call;
* otherwise (namespace not mirrored yet, walk too old or too long): the call,
  as before the mirror.

**Within a share of the quota, behind admissions.** The mirror calls at most
once per ``call_every`` (the limiter's window of ListRegistryImages, 63 s), and
only when the client-side quota has a slot free at that moment (it never
queues: a lookup that comes later is never behind it), with one attempt (a
retry would be a second slot). So at any moment at most one of the window's
slots is the mirror's: an admission's lookup waits at most one slot longer
than without the mirror, and only when the other four are taken too.

**New images.** When a walk completes, the images it lists that the previous
walk of the namespace did not (a new tag, or a tag pushed again) are handed to
``on_new`` (the leader prefetches their facts at the lowest priority), at most
``max_new_per_walk`` a walk. A leader's first walk of a namespace is its
baseline: nothing is new yet.

A walk that fails (HSS down, throttled) starts again at its namespace's next
turn, and the other namespaces go on meanwhile. At most ``max_scopes``
namespaces and ``max_images`` images are held.

The mirror is memory only (a new leader walks again); it runs in the leader
(`HssInventory.start` / `stop` with the Lease) while every replica's resolver
may read it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from image_gate.core.clock import Clock, Deadline, Sleep, monotonic, sleep
from image_gate.core.images import ImageReference, InvalidImageReference
from image_gate.core.outcomes import BaseImage, Failure, Found, NotFound, Outcome, Throttled
from image_gate.facts.registries import HssLocation, RegistryMapping
from image_gate.facts.resolver import HssLookups

__all__ = [
    "HssInventory",
    "InventoryObserver",
    "InventoryPages",
    "InventoryRow",
    "InventoryScope",
    "InventorySettings",
    "MirroredHss",
    "NullInventoryObserver",
]

logger = logging.getLogger(__name__)


class InventoryRow(Protocol):
    """What the mirror reads of one image HSS lists (``RegistryImagesInfo``)."""

    @property
    def image_id(self) -> str: ...

    @property
    def digest(self) -> str | None: ...

    @property
    def namespace(self) -> str: ...

    @property
    def image_name(self) -> str: ...

    @property
    def image_version(self) -> str: ...


R = TypeVar("R", bound=InventoryRow)
R_co = TypeVar("R_co", bound=InventoryRow, covariant=True)


class InventoryPage(Protocol[R_co]):
    """One page of a namespace's images (``clouds.huawei.inventory.RegistryPage``)."""

    @property
    def rows(self) -> tuple[R_co, ...]: ...

    @property
    def next_offset(self) -> int | None: ...


P = TypeVar("P", bound="InventoryPage[Any]")


class InventoryPages(Protocol[P]):
    """The HSS client, as the mirror pages through it (`HssClient.registry_page`): pages of type ``P``."""

    async def registry_page(
        self,
        location: HssLocation,
        *,
        namespace: str,
        offset: int,
        deadline: Deadline,
        max_quota_wait: float | None = None,
    ) -> Outcome[P]: ...


class InventoryObserver(Protocol):
    def inventory_page(self, *, outcome: str) -> None:
        """A page call, by outcome (``found``, ``no free slot``, or the failure's kind)."""

    def inventory_answer(self, *, answer: str) -> None:
        """A lookup the mirror answered without a call: ``found`` or ``not synced``."""

    def inventory_images(self, *, count: int) -> None:
        """Images the mirror holds, over every namespace."""


class NullInventoryObserver:
    def inventory_page(self, *, outcome: str) -> None:
        pass

    def inventory_answer(self, *, answer: str) -> None:
        pass

    def inventory_images(self, *, count: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class InventorySettings:
    call_every: float = 63.0
    """At most one page call per this many seconds: the window of HSS's list quota (60 s and the limiter's
    margin), so the mirror never holds more than one slot of any window."""
    retry_every: float = 5.0
    """The quota had no free slot: look again this soon (still never sooner than ``call_every`` allows)."""
    idle_every: float = 10.0
    """Nothing to walk: look for new namespaces this often."""
    rewalk_after: float = 240.0
    """A namespace is walked again once its last walk started this long ago."""
    found_for: float = 300.0
    """A listed image answers for this long after its walk started (the tag TTL: a tag can be pushed again)."""
    not_synced_for: float = 130.0
    """A complete walk that took at most this long answers "not synced" for this long after it ended (two pages,
    a window apart, fit)."""
    page_budget: float = 10.0
    """The deadline of one page call."""
    max_pages_per_walk: int = 50
    """10,000 images a namespace: past it the walk stops, and answers only what it listed."""
    max_new_per_walk: int = 50
    """New images handed to ``on_new`` per walk, so a bulk push cannot take the quota for a day."""
    max_scopes: int = 1_000
    """Namespaces mirrored at most; the rest are looked up per admission as before."""
    max_images: int = 50_000
    """Images held at most (a few hundred bytes each): past it, no namespace not mirrored yet is walked."""

    def __post_init__(self) -> None:
        for name in ("call_every", "retry_every", "idle_every", "rewalk_after", "found_for", "page_budget"):
            if getattr(self, name) <= 0:
                raise ValueError(f"InventorySettings.{name} must be positive, not {getattr(self, name)}")
        if self.not_synced_for < 0 or self.max_new_per_walk < 0:
            raise ValueError("InventorySettings: not_synced_for and max_new_per_walk must not be negative")
        if self.max_pages_per_walk < 1 or self.max_scopes < 1 or self.max_images < 1:
            raise ValueError("InventorySettings: max_pages_per_walk, max_scopes and max_images must be at least 1")


@dataclass(frozen=True, slots=True)
class InventoryScope:
    """One namespace of one registry, where HSS lists it: what one walk reads."""

    host: str
    """The registry host, to name the images found (``swr.cn-north-4.myhuaweicloud.com``)."""
    location: HssLocation
    namespace: str


@dataclass(slots=True)
class _Walk(Generic[R]):
    """A namespace's images as read so far (in progress) or in full (complete)."""

    started_at: float
    rows: dict[tuple[str, str], tuple[R, float]] = field(default_factory=dict)
    """``(image_name, image_version)`` -> the row, and when its page was read."""
    next_offset: int | None = 0
    pages: int = 0
    completed_at: float | None = None
    """When HSS's last page was read; None while in progress, or when stopped at ``max_pages_per_walk``."""

    def add(self, rows: Iterable[R], next_offset: int | None, *, at: float, max_pages: int) -> None:
        for row in rows:
            self.rows[(row.image_name, row.image_version)] = (row, at)
        self.pages += 1
        self.next_offset = next_offset if self.pages < max_pages else None
        if next_offset is None:
            self.completed_at = at  # HSS listed everything; a walk stopped at max_pages is not complete

    def match(self, image: ImageReference) -> tuple[R, float] | None:
        """The row that is ``image``: same name and tag, or same digest (its own tag preferred)."""
        if image.digest is None:
            return self.rows.get((image.short_name, image.tag or ""))
        same = [
            entry
            for (name, _), entry in self.rows.items()
            if name == image.short_name and entry[0].digest == image.digest
        ]
        return next((entry for entry in same if entry[0].image_version == image.tag), same[0] if same else None)

    def says_absent(self, now: float, within: float) -> bool:
        """Whether the walk can say an image is not listed: complete, done ``within`` ago, and not longer."""
        done = self.completed_at
        return done is not None and now - done < within and done - self.started_at <= within


class HssInventory(Generic[R]):
    """The mirror: `answer` for any replica's resolver, `start` / `stop` with the Lease."""

    def __init__(
        self,
        mapping: RegistryMapping,
        settings: InventorySettings | None = None,
        *,
        observer: InventoryObserver | None = None,
        clock: Clock = monotonic,
        sleep: Sleep = sleep,
    ) -> None:
        self.settings = settings if settings is not None else InventorySettings()
        self._mapping = mapping
        self._observer: InventoryObserver = observer if observer is not None else NullInventoryObserver()
        self._clock = clock
        self._sleep = sleep
        self._pages: InventoryPages[Any] | None = None
        self._listings: dict[InventoryScope, _Walk[R]] = {}
        """The last complete (or page-capped) walk of each namespace: what answers."""
        self._walks: dict[InventoryScope, _Walk[R]] = {}
        """Walks in progress."""
        self._scopes_of: dict[str, InventoryScope | None] = {}
        self._failed_at: dict[InventoryScope, float] = {}
        """When a walk last failed: it waits for its turn again, so one failing namespace blocks no other."""
        self._held = 0
        self._next_call = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def attach(self, pages: InventoryPages[Any]) -> None:
        """The HSS client the mirror pages through (none: no Huawei credentials, nothing is mirrored)."""
        self._pages = pages

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- what admissions read

    def answer(self, image: ImageReference, location: HssLocation) -> Outcome[R] | None:
        """The image's row, or "not synced", from a fresh enough walk; None: ask HSS."""
        listing = self._listings.get(InventoryScope(image.registry, location, image.namespace))
        if listing is None:
            return None
        now = self._clock()
        entry = listing.match(image)
        if entry is not None:
            row, read_at = entry
            if now - read_at >= self.settings.found_for:
                return None
            self._observer.inventory_answer(answer="found")
            return Found(row)
        if not listing.says_absent(now, self.settings.not_synced_for):
            return None
        self._observer.inventory_answer(answer="not synced")
        what = f"{image.namespace}/{image.short_name}" + (f"@{image.digest}" if image.digest else f":{image.tag}")
        return NotFound(
            f"HSS does not list {what} as a {location.image_type} in {location.region} "
            f"(its image inventory, read {now - listing.started_at:.0f}s ago): HSS has not synced this image; "
            "sync the registry in HSS (image-sync task)"
        )

    # -- the leader's walks

    def start(
        self,
        *,
        references: Callable[[], Iterable[str]],
        on_new: Callable[[ImageReference], None],
        delay: float = 0.0,
    ) -> None:
        """Walk the namespaces of ``references`` (the cluster's HSS facts) until `stop`; first call after ``delay``."""
        if self.running or self._pages is None:
            return
        pages = self._pages
        self._walks.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._run(pages, references, on_new, delay), name="image-gate HSS inventory"
        )

    def stop(self) -> None:
        """Leadership lost: no more calls (what was listed keeps answering until it is too old)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(
        self,
        pages: InventoryPages[Any],
        references: Callable[[], Iterable[str]],
        on_new: Callable[[ImageReference], None],
        delay: float,
    ) -> None:
        if delay > 0:
            logger.info("the HSS inventory mirror waits %.1fs for the previous leader's quota window", delay)
            await self._sleep(delay)
        while True:
            try:
                pause = await self.step(pages, references, on_new)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one page must not end the mirror
                logger.exception("the HSS inventory mirror failed a step")
                pause = self.settings.call_every
            await self._sleep(pause)

    async def step(
        self,
        pages: InventoryPages[Any],
        references: Callable[[], Iterable[str]],
        on_new: Callable[[ImageReference], None],
    ) -> float:
        """At most one page call; the seconds until the next step."""
        now = self._clock()
        if now < self._next_call:
            return self._next_call - now
        scope = self._next_scope(references, now)
        if scope is None:
            return self.settings.idle_every
        walk = self._walks.setdefault(scope, _Walk(started_at=now))
        offset = walk.next_offset or 0
        outcome = await pages.registry_page(
            scope.location,
            namespace=scope.namespace,
            offset=offset,
            deadline=Deadline.after(self.settings.page_budget, self._clock),
            max_quota_wait=0.0,
        )
        if isinstance(outcome, Throttled) and outcome.request_id is None and outcome.code is None:
            # Our own quota had no free slot: no call was made. Admissions first; look again soon.
            self._observer.inventory_page(outcome="no free slot")
            return self.settings.retry_every
        self._next_call = self._clock() + self.settings.call_every  # a call was made: one per window
        if isinstance(outcome, Failure):
            self._observer.inventory_page(outcome=outcome.kind)
            logger.info("the HSS inventory of %s could not be read: %s", _name(scope), outcome.message)
            del self._walks[scope]
            self._failed_at[scope] = self._clock()
            return self.settings.call_every
        if not isinstance(outcome, Found):  # HSS says the namespace does not exist: it lists nothing
            self._observer.inventory_page(outcome="not found")
            walk.add((), None, at=self._clock(), max_pages=self.settings.max_pages_per_walk)
            self._finish(scope, walk, on_new)
            return self.settings.call_every
        self._observer.inventory_page(outcome="found")
        page = outcome.value
        walk.add(page.rows, page.next_offset, at=self._clock(), max_pages=self.settings.max_pages_per_walk)
        if walk.next_offset is None:
            self._finish(scope, walk, on_new)
        return self.settings.call_every

    def _finish(self, scope: InventoryScope, walk: _Walk[R], on_new: Callable[[ImageReference], None]) -> None:
        del self._walks[scope]
        self._failed_at.pop(scope, None)
        previous = self._listings.get(scope)
        self._listings[scope] = walk
        self._held = sum(len(listing.rows) for listing in self._listings.values())
        self._observer.inventory_images(count=self._held)
        if previous is None:
            return  # the baseline: nothing is new to this leader yet
        new = [row for key, (row, _) in walk.rows.items() if _changed(previous.rows.get(key), row)]
        for row in new[: self.settings.max_new_per_walk]:
            try:
                image = ImageReference.parse(f"{scope.host}/{scope.namespace}/{row.image_name}:{row.image_version}")
            except InvalidImageReference:
                continue
            on_new(image)
        if new:
            logger.info("the HSS inventory of %s lists %d new images", _name(scope), len(new))

    def _next_scope(self, references: Callable[[], Iterable[str]], now: float) -> InventoryScope | None:
        """A walk in progress first; else the namespace walked longest ago, if it is due."""
        if self._walks:
            return next(iter(self._walks))
        due: InventoryScope | None = None
        oldest = now - self.settings.rewalk_after
        full = self._held >= self.settings.max_images
        for scope in self._scopes(references):
            listing = self._listings.get(scope)
            if listing is None and full:
                continue
            started = max(
                listing.started_at if listing is not None else float("-inf"), self._failed_at.get(scope, float("-inf"))
            )
            if started <= oldest:
                due, oldest = scope, started
        return due

    def _scopes(self, references: Callable[[], Iterable[str]]) -> set[InventoryScope]:
        scopes: set[InventoryScope] = set()
        for reference in references():
            scope = self._scope_of(reference)
            if scope is not None:
                scopes.add(scope)
                if len(scopes) >= self.settings.max_scopes:
                    break
        return scopes

    def _scope_of(self, reference: str) -> InventoryScope | None:
        if reference in self._scopes_of:
            return self._scopes_of[reference]
        scope = None
        try:
            image = ImageReference.parse(reference)
        except InvalidImageReference:
            image = None
        if image is not None:
            location = self._mapping.hss_location(image)
            if location is not None:
                scope = InventoryScope(image.registry, location, image.namespace)
        if len(self._scopes_of) >= 50_000:
            self._scopes_of.clear()  # a memo of parses, rebuilt at a parse each
        self._scopes_of[reference] = scope
        return scope


class MirroredHss(Generic[R]):
    """The HSS client as the resolver sees it, with the mirror answering ``find_image`` when it can."""

    def __init__(self, hss: HssLookups[R], inventory: HssInventory[R]) -> None:
        self._hss = hss
        self._inventory = inventory

    async def find_image(self, image: ImageReference, location: HssLocation, *, deadline: Deadline) -> Outcome[R]:
        answer = self._inventory.answer(image, location)
        if answer is not None:
            return answer
        return await self._hss.find_image(image, location, deadline=deadline)

    async def base_image(self, image: R, location: HssLocation, *, deadline: Deadline) -> Outcome[BaseImage]:
        return await self._hss.base_image(image, location, deadline=deadline)


def _changed(before: tuple[InventoryRow, float] | None, after: InventoryRow) -> bool:
    """A new tag, or a tag pushed again (another digest, or another HSS image)."""
    return before is None or before[0].digest != after.digest or before[0].image_id != after.image_id


def _name(scope: InventoryScope) -> str:
    return f"{scope.host}/{scope.namespace} ({scope.location.region}, {scope.location.image_type})"
