"""
The facts the policies need about an image, resolved through the caches.

`FactResolver.resolve` is what the webhook calls for each image: it answers the
base image (Huawei Cloud HSS) and the registry's digest for the tag (Alibaba
Cloud SAS), each only when asked, both at once, within the request's deadline.

Each fact takes two cloud calls, and each call has its own cache, keyed by what
determines its answer, so that a fact is fetched as rarely as it can change:

=================  ==========================================  ===========================
cache              key                                         fresh for
=================  ==========================================  ===========================
``hss_image``      location, image name, tag                   ``tag_ttl``
                   location, image name, digest (pinned)       ``pinned_ttl``
``hss_base_image`` the image's digest                          ``digest_ttl`` (forever)
``sas_repository`` region, ACR instance (or host), ns, name    ``repository_ttl``
``sas_digest``     repository, tag                             ``tag_ttl``
=================  ==========================================  ===========================

Keying the base image by digest is what makes HSS's 5 calls a minute last:
every tag, every pod and every replica that runs the same image shares one
``basic-image`` call, for as long as the entry stays in memory.

When step one of a chain finds the key of step two, it starts step two in the
background at once (`OutcomeCache.warm`), so the whole chain completes and fills
the caches even if the request that started it has long given up.

Cloud clients are seen through the `HssLookups` / `SasLookups` protocols; every
call goes through the cloud's `CircuitBreaker`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from image_gate.core.clock import Clock, Deadline, Sleep, monotonic, sleep
from image_gate.core.cloudnames import ALIYUN, HUAWEI
from image_gate.core.cloudnames import HSS_BASE_IMAGE as HSS_BASE_API
from image_gate.core.cloudnames import HSS_LIST_IMAGES as HSS_FIND_API
from image_gate.core.cloudnames import SAS_DESCRIBE_IMAGE as SAS_DIGEST_API
from image_gate.core.cloudnames import SAS_DESCRIBE_IMAGE_INSTANCES as SAS_FIND_API
from image_gate.core.imagefacts import FactName, ImageFacts, StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Failure, Found, NotApplicable, Outcome, Unauthorized
from image_gate.facts.breaker import (
    BreakerObserver,
    BreakerSettings,
    CircuitBreaker,
    NullBreakerObserver,
)
from image_gate.facts.cache import DEFAULT_TTL, Answer, CacheObserver, NullCacheObserver, OutcomeCache, TtlChoice
from image_gate.facts.regions import RegionAllowList
from image_gate.facts.registries import AcrLocation, HssLocation, RegistryMapping

__all__ = [
    "CacheSettings",
    "FactResolver",
    "FactsObserver",
    "HssLookups",
    "NullFactsObserver",
    "RegistryImageLike",
    "SasLookups",
]


NO_HUAWEI_CREDENTIALS = "no Huawei Cloud credentials are configured"
NO_ALIYUN_CREDENTIALS = "no Alibaba Cloud credentials are configured"


# -- the seams to the cloud clients


class RegistryImageLike(Protocol):
    """What the resolver reads of an HSS registry image (``RegistryImagesInfo``)."""

    @property
    def image_id(self) -> str: ...

    @property
    def digest(self) -> str | None: ...


R = TypeVar("R", bound=RegistryImageLike)
A = TypeVar("A", bound=Hashable)
F = TypeVar("F")
T = TypeVar("T")


class HssLookups(Protocol[R]):
    """The Huawei Cloud HSS client, as the resolver uses it."""

    async def find_image(self, image: ImageReference, location: HssLocation, *, deadline: Deadline) -> Outcome[R]: ...

    async def base_image(self, image: R, location: HssLocation, *, deadline: Deadline) -> Outcome[BaseImage]: ...


class SasLookups(Protocol[A]):
    """The Alibaba Cloud SAS client, as the resolver uses it. Repositories must be hashable: they are cache keys."""

    async def find_repository(
        self, image: ImageReference, location: AcrLocation, *, deadline: Deadline
    ) -> Outcome[A]: ...

    async def registry_digest(self, repository: A, tag: str, *, deadline: Deadline) -> Outcome[str]: ...


class FactsObserver(CacheObserver, BreakerObserver, Protocol):
    """Everything the resolver reports: its caches' counters and its breakers' states."""


class NullFactsObserver(NullCacheObserver, NullBreakerObserver):
    """Reports nothing: for tests and tools that keep no metrics."""


# -- settings and results


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How long facts are trusted, and how much memory they may take.

    The defaults follow what the clouds allow and what the field does
    (Kubernetes ImagePolicyWebhook: allow 5 min, deny 30 s).
    """

    tag_ttl: float = 300.0
    """A tag can be pushed again at any time: what it points at is re-checked after 5 min."""
    pinned_ttl: float = 86_400.0
    """Which HSS image a digest-pinned reference names does not change; a day bounds surprises
    such as an image deleted and synced again under a new HSS id."""
    repository_ttl: float = 3_600.0
    """ACR instance and repository ids are stable; an hour notices a repository deleted and re-created."""
    digest_ttl: float | None = None
    """Facts about a digest never change: None keeps them until the LRU bound evicts them."""
    negative_ttl: float = 30.0
    """A `NotFound` is often "not scanned yet": ask again soon, but not on every admission."""
    max_stale: float = 3_600.0
    """When a cloud fails, a `Found` up to an hour old (counted from when it was fetched) still answers."""
    lookup_budget: float = 30.0
    """The most one lookup may take in the background, quota waits and retries included."""
    refresh_ahead: float | None = 0.8
    """A hit after 80% of a tag's TTL refreshes it in the background; None to turn it off."""
    max_refreshes: int = 4
    """Background refreshes at once per cache, so that they never take the whole HSS quota."""
    max_entries: int = 10_000
    """Entries per cache (each a few hundred bytes); the least recently used one goes first."""

    def __post_init__(self) -> None:
        for name in ("tag_ttl", "pinned_ttl", "repository_ttl", "negative_ttl", "max_stale", "lookup_budget"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CacheSettings.{name} must be positive, not {getattr(self, name)}")
        if self.digest_ttl is not None and self.digest_ttl <= 0:
            raise ValueError(f"CacheSettings.digest_ttl must be positive or None, not {self.digest_ttl}")
        if self.negative_ttl > self.tag_ttl:
            raise ValueError(
                f"CacheSettings.negative_ttl ({self.negative_ttl:g}s) must not exceed tag_ttl ({self.tag_ttl:g}s)"
            )
        if self.max_stale < self.tag_ttl:
            raise ValueError(
                f"CacheSettings.max_stale ({self.max_stale:g}s) must be at least tag_ttl ({self.tag_ttl:g}s), "
                "or no stale fact could ever be served"
            )
        if self.refresh_ahead is not None and not 0 < self.refresh_ahead < 1:
            raise ValueError(f"CacheSettings.refresh_ahead must be between 0 and 1, not {self.refresh_ahead}")
        if self.max_refreshes < 0 or self.max_entries < 1:
            raise ValueError("CacheSettings.max_refreshes must be >= 0 and max_entries >= 1")


@dataclass(frozen=True, slots=True)
class _Resolved:
    """One fact with its freshness, as the two chains return it."""

    outcome: Outcome[Any]
    stale: bool = False
    age: float = 0.0
    """For a stale fact: the age of its oldest stale step."""
    because: tuple[Failure, ...] = ()
    found_id: str | None = None
    """The cloud's id of what the chain's first step found (HSS's image id), when it has one."""

    @classmethod
    def of(cls, *answers: Answer[Any], found_id: str | None = None) -> _Resolved:
        """The last answer's outcome; a `Found` is stale if any step of the chain was.

        A failure or "not found" reached through a stale step is just that: it is
        the answer, and nothing stale is being passed off as a fact.
        """
        outcome = answers[-1].outcome
        if not isinstance(outcome, Found) or not any(a.stale for a in answers):
            return cls(outcome, found_id=found_id)
        return cls(
            outcome,
            stale=True,
            age=max(a.age for a in answers if a.stale),
            because=tuple(a.error for a in answers if a.error is not None),
            found_id=found_id,
        )

    def staleness(self, fact: FactName) -> tuple[StaleFact, ...]:
        return (StaleFact(fact, self.age, self.because),) if self.stale else ()


# -- the resolver


class FactResolver:
    """Resolves image facts through caches, breakers and the cloud clients.

    ``hss`` / ``sas`` are None when that cloud has no credentials: its facts are
    then `Unauthorized` for the images the mapping sends to it, so that
    ``onUnresolved`` decides, and the message says what to configure.
    ``regions``: an image in a region the cloud does not serve is "not
    applicable" without a call, whoever asks (a review in any fact-store mode,
    ``image-gate check``, the leader); default, `RegionAllowList`'s.
    """

    def __init__(
        self,
        mapping: RegistryMapping,
        hss: HssLookups[Any] | None,
        sas: SasLookups[Any] | None,
        *,
        settings: CacheSettings = CacheSettings(),
        breakers: BreakerSettings | None = None,
        clock: Clock = monotonic,
        sleep: Sleep = sleep,
        observer: FactsObserver | None = None,
        regions: RegionAllowList | None = None,
    ) -> None:
        self.mapping = mapping
        self.settings = settings
        self.regions = regions if regions is not None else RegionAllowList()
        self._hss = hss
        self._sas = sas
        watcher: FactsObserver = observer if observer is not None else NullFactsObserver()
        breaker_settings = breakers if breakers is not None else BreakerSettings()
        self._hss_breaker = CircuitBreaker(HUAWEI, breaker_settings, clock=clock, observer=watcher)
        self._sas_breaker = CircuitBreaker(ALIYUN, breaker_settings, clock=clock, observer=watcher)
        for breaker in self.breakers:
            # Breakers report changes; the observer hears the starting state too, so that the
            # breaker gauge has a value per cloud from the first scrape, not from the first outage.
            watcher.breaker_state(cloud=breaker.cloud, state=breaker.state)

        def cache(name: str, cloud: str, api: str, ttl: float | None) -> OutcomeCache[Any, Any]:
            return OutcomeCache(
                name,
                cloud=cloud,
                api=api,
                maxsize=settings.max_entries,
                ttl=ttl,
                negative_ttl=settings.negative_ttl,
                max_stale=settings.max_stale,
                lookup_budget=settings.lookup_budget,
                refresh_ahead=settings.refresh_ahead,
                max_refreshes=settings.max_refreshes,
                clock=clock,
                sleep=sleep,
                observer=watcher,
            )

        self._hss_images: OutcomeCache[Hashable, RegistryImageLike] = cache(
            "hss_image", HUAWEI, HSS_FIND_API, settings.tag_ttl
        )
        self._hss_bases: OutcomeCache[Hashable, BaseImage] = cache(
            "hss_base_image", HUAWEI, HSS_BASE_API, settings.digest_ttl
        )
        self._sas_repositories: OutcomeCache[Hashable, Hashable] = cache(
            "sas_repository", ALIYUN, SAS_FIND_API, settings.repository_ttl
        )
        self._sas_digests: OutcomeCache[Hashable, str] = cache("sas_digest", ALIYUN, SAS_DIGEST_API, settings.tag_ttl)

    @property
    def breakers(self) -> tuple[CircuitBreaker, CircuitBreaker]:
        """The HSS and SAS breakers, for ``/readyz``'s detail (`image_gate.app.health`)."""
        return self._hss_breaker, self._sas_breaker

    async def resolve(
        self, image: ImageReference, *, base_image: bool, digest: bool, deadline: Deadline, fresh: bool = False
    ) -> ImageFacts:
        """The facts asked for, each within ``deadline``; the two clouds are asked concurrently.

        ``fresh``: what a tag points at is asked again, whatever the caches hold (the leader storing a fact,
        which must not be older than its ``observedAt`` says); what never changes (a digest's base image,
        a repository's ids) still comes from the caches.
        """
        base: _Resolved | None = None
        registry: _Resolved | None = None
        if base_image and digest:
            # One chain in a task, the other in this coroutine: one task fewer keeps a warm resolve cheap.
            other = asyncio.ensure_future(self._registry_digest(image, deadline, fresh))
            try:
                base = await self._base_image(image, deadline, fresh)
            except BaseException:
                # The chains return outcomes and never raise: this is our caller being cancelled.
                # The other chain goes too; the lookups the caches share with others go on.
                other.cancel()
                raise
            registry = await other
        elif base_image:
            base = await self._base_image(image, deadline, fresh)
        elif digest:
            registry = await self._registry_digest(image, deadline, fresh)
        return ImageFacts(
            base_image=base.outcome if base is not None else None,
            registry_digest=registry.outcome if registry is not None else None,
            stale=(base.staleness("base image") if base is not None else ())
            + (registry.staleness("registry digest") if registry is not None else ()),
            hss_image_id=base.found_id if base is not None else None,
        )

    def answered_at_once(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        """`resolve`'s answer when the caches hold every step of it fresh (or it needs no call), without an
        await: the hits are counted and refreshed ahead as `resolve` would. None, with nothing counted, when
        any step would have to wait; `resolve` then asks. A warm review answers here (`image_gate.core.admission`):
        a few coroutines and a task less per image, about a tenth of its CPU."""
        base = _at_once(self._hss_chain(image)) if base_image else None
        if base_image and base is None:
            return None
        registry = _at_once(self._sas_chain(image)) if digest else None
        if digest and registry is None:
            return None
        for answer in (base, registry):
            if answer is not None:
                for count in answer.counts:
                    count()
        return ImageFacts(
            base_image=base.outcome if base is not None else None,
            registry_digest=registry.outcome if registry is not None else None,
            hss_image_id=base.found_id if base is not None else None,
        )

    def answered_without_call(self, image: ImageReference, *, base_image: bool) -> NotApplicable | None:
        """What the base image (else the registry digest) fact is without asking: no mapping, no tag, a region
        the cloud does not serve; else None.

        The same words `resolve` answers with, for a reader that must not wait (``SharedFacts.known``)."""
        if base_image:
            hss = self.mapping.hss_location(image)
            return _unmapped(image, _HSS) if hss is None else self.region_refusal(HUAWEI, image, hss.region)
        acr = self.mapping.acr_location(image)
        if acr is None:
            return _unmapped(image, _ACR)
        return _untagged(image) if image.tag is None else self.region_refusal(ALIYUN, image, acr.region)

    def region_refusal(self, cloud: str, image: ImageReference, region: str) -> NotApplicable | None:
        """The answer for an image in a ``region`` that ``cloud`` does not serve; None when it does."""
        refusal = self.regions.refusal(cloud, region)
        return NotApplicable(f"{image.registry}: {refusal}") if refusal is not None else None

    async def aclose(self) -> None:
        """Cancel every lookup in flight (at shutdown)."""
        await asyncio.gather(
            self._hss_images.aclose(),
            self._hss_bases.aclose(),
            self._sas_repositories.aclose(),
            self._sas_digests.aclose(),
        )

    # -- HSS: reference -> registry image -> base image (by digest)

    async def _base_image(self, image: ImageReference, deadline: Deadline, fresh: bool = False) -> _Resolved:
        chain = self._hss_chain(image)
        return chain if isinstance(chain, _Resolved) else await chain.resolve(deadline, fresh_first=fresh)

    def _hss_chain(self, image: ImageReference) -> _Resolved | _Chain[Any, BaseImage]:
        """The two lookups of the base image, or the answer without a call."""
        location = self.mapping.hss_location(image)
        if location is None:
            return _Resolved(_unmapped(image, _HSS))
        refused = self.region_refusal(HUAWEI, image, location.region)
        if refused is not None:
            return _Resolved(refused)
        hss = self._hss
        if hss is None:
            return _Resolved(Unauthorized(cloud=HUAWEI, api="-", detail=NO_HUAWEI_CREDENTIALS))
        breaker = self._hss_breaker
        if image.digest is not None:
            image_key: Hashable = (location, image.name, "@", image.digest)
            ttl = self.settings.pinned_ttl
        else:
            image_key = (location, image.name, ":", image.tag)
            ttl = self.settings.tag_ttl
        return _Chain(
            self._hss_images,
            image_key,
            lambda budget: breaker.call(HSS_FIND_API, lambda: hss.find_image(image, location, deadline=budget)),
            self._hss_bases,
            lambda found: _base_key(found, location),
            lambda found, budget: breaker.call(HSS_BASE_API, lambda: hss.base_image(found, location, deadline=budget)),
            first_ttl=ttl,
            found_id=lambda found: found.image_id or None,
        )

    # -- SAS: reference -> ACR repository (ids) -> the tag's current digest

    async def _registry_digest(self, image: ImageReference, deadline: Deadline, fresh: bool = False) -> _Resolved:
        chain = self._sas_chain(image)
        return chain if isinstance(chain, _Resolved) else await chain.resolve(deadline, fresh_second=fresh)

    def _sas_chain(self, image: ImageReference) -> _Resolved | _Chain[Any, str]:
        """The two lookups of the tag's digest, or the answer without a call."""
        location = self.mapping.acr_location(image)
        if location is None:
            return _Resolved(_unmapped(image, _ACR))
        tag = image.tag
        if tag is None:
            # Checked before the credentials: without a tag there is nothing to ask, whoever asks.
            return _Resolved(_untagged(image))
        refused = self.region_refusal(ALIYUN, image, location.region)
        if refused is not None:
            return _Resolved(refused)
        sas = self._sas
        if sas is None:
            return _Resolved(Unauthorized(cloud=ALIYUN, api="-", detail=NO_ALIYUN_CREDENTIALS))
        breaker = self._sas_breaker
        # Without an instance id the host tells ACR instances of one region apart.
        instance = location.instance_id or image.registry
        return _Chain(
            self._sas_repositories,
            (location.region, instance, image.namespace, image.short_name),
            lambda budget: breaker.call(SAS_FIND_API, lambda: sas.find_repository(image, location, deadline=budget)),
            self._sas_digests,
            lambda repository: (repository, tag),
            lambda repository, budget: breaker.call(
                SAS_DIGEST_API, lambda: sas.registry_digest(repository, tag, deadline=budget)
            ),
        )


@dataclass(slots=True)
class _AtOnce:
    """A fact the caches answered without a wait, and how to count the hits it took (`answered_at_once`)."""

    outcome: Outcome[Any]
    found_id: str | None = None
    counts: tuple[Callable[[], None], ...] = ()


def _at_once(chain: _Resolved | _Chain[Any, Any]) -> _AtOnce | None:
    return _AtOnce(chain.outcome) if isinstance(chain, _Resolved) else chain.at_once()


@dataclass(slots=True)  # not frozen: one per chain and review, and a frozen __init__ costs a setattr call a field
class _Chain(Generic[F, T]):
    """Two cached lookups in a row, where the first finds what the second asks about.

    As soon as the first finds its answer it starts the second in the
    background, so a request whose deadline passes between the two still
    leaves both answers in the cache for the API server's retry. ``found_id``
    names what the first step found (HSS's image id), for the record.
    """

    first: OutcomeCache[Hashable, F]
    first_key: Hashable
    find: Callable[[Deadline], Awaitable[Outcome[F]]]
    second: OutcomeCache[Hashable, T]
    second_key: Callable[[F], Hashable]
    fetch: Callable[[F, Deadline], Awaitable[Outcome[T]]]
    first_ttl: TtlChoice = DEFAULT_TTL
    found_id: Callable[[F], str | None] = lambda _: None

    async def resolve(self, deadline: Deadline, *, fresh_first: bool = False, fresh_second: bool = False) -> _Resolved:
        """Both steps, within ``deadline``. ``fresh_first`` / ``fresh_second``: that step's cached answer does
        not do (`OutcomeCache.get`'s ``fresh``)."""
        step_one = await self.first.get(
            self.first_key, self._find_and_warm, deadline=deadline, ttl=self.first_ttl, fresh=fresh_first
        )
        if not isinstance(step_one.outcome, Found):
            return _Resolved.of(step_one)
        found = step_one.outcome.value
        step_two = await self.second.get(
            self.second_key(found), partial(self.fetch, found), deadline=deadline, fresh=fresh_second
        )
        return _Resolved.of(step_one, step_two, found_id=self.found_id(found))

    def at_once(self) -> _AtOnce | None:
        """The chain's answer if both steps (or a first that found nothing) are fresh in the caches; else None.
        Fresh answers are never stale, so nothing is lost against `resolve`."""
        one = self.first.at_once(self.first_key)
        if one is None:
            return None
        count_first = partial(self.first.count_hit, self.first_key, self._find_and_warm, ttl=self.first_ttl)
        if not isinstance(one, Found):
            return _AtOnce(one, counts=(count_first,))
        found = one.value
        second_key = self.second_key(found)
        two = self.second.at_once(second_key)
        if two is None:
            return None
        count_second = partial(self.second.count_hit, second_key, partial(self.fetch, found))
        return _AtOnce(two, found_id=self.found_id(found), counts=(count_first, count_second))

    async def _find_and_warm(self, budget: Deadline) -> Outcome[F]:
        outcome = await self.find(budget)
        if isinstance(outcome, Found):
            found = outcome.value
            self.second.warm(self.second_key(found), partial(self.fetch, found))
        return outcome


_HSS = "Huawei HSS"
_ACR = "Alibaba Cloud ACR"


def _unmapped(image: ImageReference, service: str) -> NotApplicable:
    return NotApplicable(f"no registry mapping sends {image.registry} to {service}")


def _untagged(image: ImageReference) -> NotApplicable:
    return NotApplicable(f"{image} names no tag to compare with the registry")


def _base_key(image: RegistryImageLike, location: HssLocation) -> Hashable:
    """Facts about a digest hold wherever the image is; without a digest, HSS's id in its project is the key."""
    if image.digest:
        return ("digest", image.digest)
    return ("image", location.region, location.project_id, image.image_id)
