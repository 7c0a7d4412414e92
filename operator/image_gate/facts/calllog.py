"""
The cloud calls a leader made recently, handed to the next leader so the quota survives the hand-over.

HSS's quota (5 calls a minute per user on each API) belongs to the credential,
not to a process. When leadership moves, the new leader's limiters start
empty; were it to call at once, the calls its predecessor made in the last
minute and its own would add up to more than HSS allows. So the leader keeps a
`CallLog` (when it last started a call on each API, wall-clock, because the
next leader reads it on another machine), writes it into the Lease at every
renewal and whenever it changes, and the next leader makes no call on an API
until the quota window of its predecessor's last call there has passed.

What the log cannot know is a call started after its last write: a leader that
died, or lost the API server, may have called until its leadership lapsed (it
stops calling ``renew_deadline`` after its last renewal, as client-go's leader
election does). A `Handover` from a leader that did not release the Lease
therefore also holds every API until then, plus the window. A clean release
(shutdown, upgrade) writes the log last and hands over exactly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from image_gate.core.clock import Clock

__all__ = ["CallLog", "CallObserver", "Handover", "UnreadableCallLog", "decode_calls", "encode_calls"]

WallClock = Clock
"""Seconds since the epoch: the log is read on other machines."""


class UnreadableCallLog(ValueError):
    """The Lease's call log is not what this version writes; the reader assumes the worst."""


class CallObserver(Protocol):
    """``image_gate.clouds.observe.CallObserver``, as the log forwards to it (metrics)."""

    def upstream_call(self, *, cloud: str, api: str, outcome: str, seconds: float) -> None: ...

    def quota_wait(self, *, cloud: str, api: str, seconds: float) -> None: ...


class CallLog:
    """When each API was last called, as ``"cloud/API" -> start time``; a `CallObserver` for the clients.

    ``forward`` receives every report as well, so the clients keep one observer (metrics and the log).
    """

    def __init__(self, *, wall: WallClock = time.time, forward: CallObserver | None = None) -> None:
        self._wall = wall
        self._forward = forward
        self._last: dict[str, float] = {}
        self.changed = asyncio.Event()
        """Set when a call is recorded; the Lease loop clears it once the log is written."""

    def upstream_call(self, *, cloud: str, api: str, outcome: str, seconds: float) -> None:
        """Called by the cloud clients after each HTTP call: it started ``seconds`` ago."""
        self.record(f"{cloud}/{api}", self._wall() - max(0.0, seconds))
        if self._forward is not None:
            self._forward.upstream_call(cloud=cloud, api=api, outcome=outcome, seconds=seconds)

    def quota_wait(self, *, cloud: str, api: str, seconds: float) -> None:
        if self._forward is not None:
            self._forward.quota_wait(cloud=cloud, api=api, seconds=seconds)

    def record(self, api: str, started: float) -> None:
        if started > self._last.get(api, float("-inf")):
            self._last[api] = started
            self.changed.set()

    def adopt(self, calls: Mapping[str, float]) -> None:
        """Take over a predecessor's calls, so the log this leader writes still covers them."""
        for api, started in calls.items():
            self.record(api, started)

    def snapshot(self, *, within: float) -> dict[str, float]:
        """The calls started in the last ``within`` seconds: older ones no longer count against a quota."""
        horizon = self._wall() - within
        return {api: started for api, started in sorted(self._last.items()) if started >= horizon}


def encode_calls(calls: Mapping[str, float]) -> str:
    """The log as the Lease annotation holds it: compact JSON, times to the millisecond."""
    return json.dumps({api: round(started, 3) for api, started in sorted(calls.items())}, separators=(",", ":"))


def decode_calls(text: str) -> dict[str, float]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # nested past the recursion limit: not a call log
        raise UnreadableCallLog(f"not JSON: {text[:80]!r}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in data.items()
    ):
        raise UnreadableCallLog(f"not an object of API names to times: {text[:80]!r}")
    return {api: float(started) for api, started in data.items()}


@dataclass(frozen=True, slots=True)
class Handover:
    """What a new leader learns of its predecessor's calls (wall-clock seconds since the epoch)."""

    last_calls: Mapping[str, float] = field(default_factory=dict)
    """``"cloud/API" -> when the predecessor last started a call on it``."""
    unrecorded_until: float | None = None
    """The predecessor did not release the Lease: it may have called any API, unrecorded, until then."""

    def hold_until(self, cloud: str, *, window: float) -> float:
        """When this leader may first call ``cloud``: every recent call's quota window has passed."""
        times = [started for api, started in self.last_calls.items() if api.split("/", 1)[0] == cloud]
        if self.unrecorded_until is not None:
            times.append(self.unrecorded_until)
        return max(times) + window if times else float("-inf")
