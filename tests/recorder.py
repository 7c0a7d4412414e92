"""A `CallObserver` that keeps what the cloud clients tell it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Recorder"]


@dataclass
class Recorder:
    calls: list[tuple[str, str]] = field(default_factory=list)
    """(api, outcome) per HTTP call."""
    waits: list[float] = field(default_factory=list)
    """Seconds waited for the client-side quota."""
    clouds: set[str] = field(default_factory=set)

    def upstream_call(self, *, cloud: str, api: str, outcome: str, seconds: float) -> None:
        self.clouds.add(cloud)
        self.calls.append((api, outcome))

    def quota_wait(self, *, cloud: str, api: str, seconds: float) -> None:
        self.waits.append(seconds)
