"""
The seam through which cloud clients report what they did, without knowing Prometheus.

`image_gate.app.metrics` implements `CallObserver`; tests may record calls with a
list. Clients call it once per HTTP call they make and once per wait on a quota.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CallObserver", "NullObserver"]


class CallObserver(Protocol):
    def upstream_call(self, *, cloud: str, api: str, outcome: str, seconds: float) -> None:
        """One HTTP call: ``outcome`` is ``found``, ``not found`` or a `Failure.kind`."""

    def quota_wait(self, *, cloud: str, api: str, seconds: float) -> None:
        """A call waited ``seconds`` for the client-side quota."""


class NullObserver:
    def upstream_call(self, *, cloud: str, api: str, outcome: str, seconds: float) -> None:
        pass

    def quota_wait(self, *, cloud: str, api: str, seconds: float) -> None:
        pass
