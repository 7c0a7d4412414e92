"""
Fault injection and call counting, per API, for tests and the demo.

A test says what the next calls to an API should suffer::

    sim.faults.add(Fault(api="ListRegistryImages", kind="throttle", retry_after=2, times=1))

and reads how many calls each API served (``sim.calls["DescribeImage"]``).
The same is reachable over HTTP on every simulator: ``POST /_sim/faults``
(a Fault as JSON), ``DELETE /_sim/faults``, ``GET /_sim/calls``.

Kinds:

* ``latency``   -- answer normally after ``seconds``.
* ``timeout``   -- hold the request ``seconds`` (default 3600), then drop it.
* ``error``     -- answer ``status`` (default 500) with the cloud's error body.
* ``throttle``  -- answer the cloud's throttling response, with ``retry_after`` seconds as hint.
* ``malformed`` -- answer 200 with a body that is not the documented JSON.
* ``auth``      -- reject the signature as the gateway would.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Fault", "FaultBook", "FaultKind"]

FaultKind = Literal["latency", "timeout", "error", "throttle", "malformed", "auth"]
_KINDS = ("latency", "timeout", "error", "throttle", "malformed", "auth")


@dataclass(frozen=True, slots=True)
class Fault:
    api: str
    """The API name (``ListRegistryImages``, ``DescribeImage``, ...), or ``*`` for all."""
    kind: FaultKind
    times: int | None = None
    """How many calls suffer it; None: until cleared."""
    seconds: float = 0.0
    status: int | None = None
    retry_after: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        if data.get("kind") not in _KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(_KINDS)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultBook:
    """Faults waiting to happen, and calls counted. Thread-safe: tests poke it from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[list[Any]] = []  # [fault, remaining]
        self.calls: Counter[str] = Counter()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append([fault, fault.times])

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.calls.clear()

    def count(self, api: str) -> None:
        with self._lock:
            self.calls[api] += 1

    def take(self, api: str) -> Fault | None:
        """The fault the next call to ``api`` suffers, if any (consumed)."""
        with self._lock:
            for entry in self._faults:
                fault, remaining = entry
                if fault.api in (api, "*") and (remaining is None or remaining > 0):
                    if remaining is not None:
                        entry[1] = remaining - 1
                    return fault  # type: ignore[no-any-return]
            return None

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)
