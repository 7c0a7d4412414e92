"""
One leader for the whole deployment: a ``coordination.k8s.io/v1`` Lease, held as client-go holds one.

kopf runs ``--standalone`` in every replica (its peering pauses every watch,
and so every index, in all replicas but one: it is not leader election), and
this loop runs beside it. The leader is the only replica that calls the
clouds, so the client-side quota is the deployment's quota.

The protocol is client-go's (``k8s.io/client-go/tools/leaderelection``), so
``kubectl get lease`` reads as for any controller:

* every ``retry_period`` each replica reads the Lease. A holder other than us
  counts as alive while the Lease keeps changing: its expiry is judged by *our*
  clock, ``lease_duration`` after the record last changed, never by comparing
  its ``renewTime`` with our clock (clocks drift between nodes). When it
  changed is known to within one read: after our previous read began, and
  before this one answered. We count from the earliest (the previous read's
  start, but at most one ``retry_period`` back), so a standby takes over at
  most ``lease_duration`` after the holder's last renewal rather than up to a
  ``retry_period`` later; and it reads again at exactly that moment, not at
  the next ``retry_period`` tick, so a dead leader is replaced within the
  Lease duration of its death. That is safe because the holder stops leading
  ``renew_deadline`` after its last renewal *began*, and ``retry_period +
  renew_deadline < lease_duration`` (checked);
* an expired or released Lease is taken with a replace guarded by the
  ``resourceVersion`` we read: of two replicas trying at once, one wins and the
  other gets a conflict;
* the holder renews every ``retry_period``; a holder that has not renewed for
  ``renew_deadline`` (shorter than the duration) stops leading on its own, by
  its own clock, before anyone else may take over;
* on shutdown the holder releases the Lease (empty holder, duration 1 s), so
  the next leader takes over within a ``retry_period``, not a ``lease_duration``.

The leader writes its `CallLog` into the annotation `CALLS_ANNOTATION` at every
renewal and soon after every cloud call; the next leader reads it to wait out
its predecessor's quota windows (`image_gate.facts.calllog.Handover`).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from image_gate.core.clock import Clock, Sleep, monotonic, sleep
from image_gate.facts.calllog import CallLog, Handover, UnreadableCallLog, decode_calls, encode_calls
from image_gate.kube.kubeapi import ApiError, KubeApi

__all__ = [
    "CALLS_ANNOTATION",
    "KubeLeases",
    "LeaderElector",
    "LeaseSettings",
    "LeaseStore",
    "from_micro_time",
    "micro_time",
]

logger = logging.getLogger(__name__)

CALLS_ANNOTATION: Final = "imagegate.io/cloud-calls"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Which Lease, who we are, and the timings (Kyverno's defaults: 15 s / 10 s / 2 s)."""

    namespace: str
    identity: str
    name: str = "image-gate"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    flush_delay: float = 0.25
    """After a cloud call, the leader writes the call log this soon (instead of at the next renewal)."""
    quota_window: float = 60.0
    """Calls older than this are dropped from the call log: no quota counts further back."""

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("LeaseSettings.identity must not be empty")
        if not (
            0 < self.retry_period < self.renew_deadline < self.lease_duration
            and self.retry_period + self.renew_deadline < self.lease_duration
        ):
            raise ValueError(
                "the Lease needs 0 < retry_period < renew_deadline < lease_duration and "
                "retry_period + renew_deadline < lease_duration, not "
                f"{self.retry_period:g} / {self.renew_deadline:g} / {self.lease_duration:g}"
            )


class LeaseStore(Protocol):
    """Where the Lease lives: the API server (`KubeLeases`); raises `ApiError`."""

    async def get(self) -> dict[str, Any] | None:
        """The Lease object, or None if there is none."""

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create it; `ApiError` with ``conflict`` when somebody was first."""

    async def replace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace it; `ApiError` with ``conflict`` when its ``resourceVersion`` is no longer current."""


class KubeLeases:
    """The Lease in the API server."""

    def __init__(self, api: KubeApi, *, namespace: str, name: str) -> None:
        self._api = api
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._path = f"{self._collection}/{name}"

    async def get(self) -> dict[str, Any] | None:
        try:
            return await self._api.request("GET", self._path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._api.request("POST", self._collection, body)

    async def replace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._api.request("PUT", self._path, body)


def micro_time(seconds: float) -> str:
    """A ``metav1.MicroTime``: RFC 3339 with microseconds, in UTC."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_micro_time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()


LeadershipCallback = Callable[[bool, Handover | None], None]
"""Told ``(True, handover)`` when this replica starts leading and ``(False, None)`` when it stops."""


class LeaderElector:
    """Takes, renews and releases the Lease; `leading` says whether this replica may act as the leader now."""

    def __init__(
        self,
        store: LeaseStore,
        settings: LeaseSettings,
        *,
        calls: CallLog,
        on_change: LeadershipCallback = lambda leading, handover: None,
        clock: Clock = monotonic,
        wall: Clock | None = None,
        sleep: Sleep = sleep,
    ) -> None:
        self.settings = settings
        self._store = store
        self._calls = calls
        self._on_change = on_change
        self._clock = clock
        self._wall: Clock = wall if wall is not None else time.time
        self._sleep = sleep
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        """Our clock's time from which the holder's record counts as unchanged (see the module's docstring)."""
        self._read_started: float | None = None
        """When our last successful read of the Lease began: the record it returned was current after then."""
        self._expires_at: float | None = None
        """When another replica's Lease expires by our clock, while it holds a live one: our next attempt."""
        self._renewed_at: float | None = None
        """Our clock's time when our last successful renewal began (its write is later); None when not leading."""
        self._leading = False
        self._problem: str | None = None
        self.holder: str | None = None
        """Who holds the Lease, as last read (for logs and tests)."""

    @property
    def leading(self) -> bool:
        """True while we hold the Lease and renewed it less than ``renew_deadline`` ago, by our own clock."""
        return (
            self._leading
            and self._renewed_at is not None
            and self._clock() - self._renewed_at < self.settings.renew_deadline
        )

    async def run(self) -> None:
        """Try, renew, and at cancellation release; never raises for an unreachable API server."""
        try:
            while True:
                await self.step()
                await self._pause()
        finally:
            if self._leading:
                await asyncio.shield(self.release())

    async def step(self) -> bool:
        """One attempt to take or renew the Lease; True if we hold it afterwards."""
        started = self._clock()
        self._expires_at = None
        try:
            held, handover = await self._try_acquire_or_renew()
        except ApiError as exc:
            if not exc.conflict:
                # Once per kind of trouble, not every retry period: a missing Role would say the same thing
                # every 2 seconds.
                problem = f"{exc.status} {exc.reason}"
                level = logging.WARNING if problem != self._problem else logging.DEBUG
                logger.log(level, "the Lease %s could not be read or written: %s", self.settings.name, exc)
                self._problem = problem
            held, handover = False, None
        else:
            if self._problem is not None:
                logger.info("the Lease %s can be read and written again", self.settings.name)
            self._problem = None
        if held:
            # The renew deadline counts from before the write: the write took effect after this, never before,
            # so we stop leading no later than renew_deadline after the renewal others observed.
            self._renewed_at = started
            if not self._leading:
                self._leading = True
                logger.info("leading: this replica now resolves facts for the deployment")
                self._on_change(True, handover)
        self._check_lapsed()
        return held

    def _check_lapsed(self) -> None:
        if self._leading and not self.leading:
            self._leading = False
            self._renewed_at = None
            logger.warning(
                "no longer leading: the Lease was not renewed for %gs (or another replica holds it)",
                self.settings.renew_deadline,
            )
            self._on_change(False, None)

    async def release(self) -> None:
        """Give the Lease up (at shutdown) with the final call log, so the next leader need not wait for expiry."""
        if not self._leading:
            return
        self._leading = False
        self._renewed_at = None
        self._on_change(False, None)
        try:
            lease = await self._store.get()
            if lease is None or _spec(lease).get("holderIdentity") != self.settings.identity:
                return
            now = self._wall()
            body = self._with_calls(lease)
            body["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time(now))
            await self._store.replace(body)
            logger.info("released the Lease %s", self.settings.name)
        except ApiError as exc:
            logger.warning(
                "the Lease %s was not released (the next leader waits for it to expire): %s", self.settings.name, exc
            )

    # -- internals

    async def _pause(self) -> None:
        """Until the next attempt: a retry period, or a moment after a cloud call the log must record."""
        if not self._leading:
            delay = self.settings.retry_period
            if self._expires_at is not None:
                delay = min(delay, max(0.0, self._expires_at - self._clock()))  # at the expiry, not a tick later
            await self._sleep(delay)
            return
        changed = asyncio.ensure_future(self._calls.changed.wait())
        timer = asyncio.ensure_future(self._sleep(self.settings.retry_period))
        try:
            await asyncio.wait({changed, timer}, return_when=asyncio.FIRST_COMPLETED)
            if changed.done() and not timer.done():
                await self._sleep(self.settings.flush_delay)  # gather a burst of calls into one write
        finally:
            changed.cancel()
            timer.cancel()

    async def _try_acquire_or_renew(self) -> tuple[bool, Handover | None]:
        now_wall = self._wall()
        read_started = self._clock()
        lease = await self._store.get()
        previous_read, self._read_started = self._read_started, read_started
        if lease is None:
            metadata = {"name": self.settings.name, "namespace": self.settings.namespace}
            body = self._with_calls({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata})
            body["spec"] = self._spec(acquired=now_wall, renewed=now_wall, transitions=0)
            await self._store.create(body)
            self.holder = self.settings.identity
            return True, Handover()

        spec = _spec(lease)
        holder = spec.get("holderIdentity") or None
        self.holder = holder
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"), spec.get("acquireTime"))
        if record != self._observed:
            now = self._clock()
            # It changed after our previous read began (when it was still the old one), at most a retry
            # period ago counted from now; the first sight of a record says nothing of its age.
            earliest = now - self.settings.retry_period
            self._observed_at = now if previous_read is None or self._observed is None else max(previous_read, earliest)
            self._observed = record
        duration = _seconds(spec.get("leaseDurationSeconds"), self.settings.lease_duration)
        ours = holder == self.settings.identity
        if holder is not None and not ours and self._clock() < self._observed_at + duration:
            self._expires_at = self._observed_at + duration
            return False, None  # somebody else holds it, and it is alive

        handover: Handover | None = None
        if not (ours and self._leading):
            # Taking over -- from another replica, or from an earlier run under our own name
            # (a restarted container): its calls count against the quota all the same.
            handover = self._handover(lease, released=holder is None)
            self._calls.adopt(handover.last_calls)
        if ours:
            acquired = from_micro_time(spec.get("acquireTime")) or now_wall
            transitions = int(spec.get("leaseTransitions") or 0)
        else:
            acquired = now_wall
            transitions = int(spec.get("leaseTransitions") or 0) + 1
        body = self._with_calls(lease)
        body["spec"] = {**spec, **self._spec(acquired=acquired, renewed=now_wall, transitions=transitions)}
        await self._store.replace(body)
        self._observed = None
        self.holder = self.settings.identity
        return True, handover

    def _handover(self, lease: Mapping[str, Any], *, released: bool) -> Handover:
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        spec = _spec(lease)
        renewed = from_micro_time(spec.get("renewTime"))
        unrecorded_until = None if released else (renewed or self._wall()) + self.settings.renew_deadline
        text = annotations.get(CALLS_ANNOTATION)
        if text is None:
            return Handover(unrecorded_until=unrecorded_until)
        try:
            calls = decode_calls(text)
        except UnreadableCallLog as exc:
            logger.warning("the previous leader's call log is unreadable (%s): waiting a full window", exc)
            return Handover(unrecorded_until=renewed if renewed is not None else self._wall())
        return Handover(last_calls=calls, unrecorded_until=unrecorded_until)

    def _spec(self, *, acquired: float, renewed: float, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": max(1, round(self.settings.lease_duration)),
            "acquireTime": micro_time(acquired),
            "renewTime": micro_time(renewed),
            "leaseTransitions": transitions,
        }

    def _with_calls(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``lease`` with our call log in its annotation (its resourceVersion kept: the write is guarded)."""
        body = copy.deepcopy(dict(lease))
        metadata = body.setdefault("metadata", {})
        annotations = metadata.get("annotations") or {}
        annotations[CALLS_ANNOTATION] = encode_calls(self._calls.snapshot(within=self.settings.quota_window))
        metadata["annotations"] = annotations
        self._calls.changed.clear()
        return body


def _spec(lease: Mapping[str, Any]) -> dict[str, Any]:
    spec = lease.get("spec")
    return dict(spec) if isinstance(spec, Mapping) else {}


def _seconds(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else default
