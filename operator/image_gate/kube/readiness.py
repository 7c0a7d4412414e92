"""
Whether this replica may judge reviews yet.

Kept apart from the controller so that the health server can read it without importing kopf.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["Readiness"]


class WatchProblems(Protocol):
    """`image_gate.kube.watchhealth.WatchHealth`: why the indexes may have stopped following the cluster."""

    def problem(self) -> str | None: ...


class Readiness:
    """Set once the indexes are complete, and while their watches are heard; read by the webhook and ``/readyz``.

    A watch that went silent makes the replica unready (the Service sends reviews to replicas whose
    indexes follow the cluster) but does not stop it judging: the index it has is the best it knows.
    """

    def __init__(self, watches: WatchProblems | None = None) -> None:
        self.indexes = asyncio.Event()
        self.webhook_listening = False
        self.stopping = False
        """Set on SIGTERM: the replica still judges reviews while the Service stops sending them."""
        self.watches = watches

    @property
    def ready(self) -> bool:
        return self.reason() == "ready"

    def reason(self) -> str:
        if self.stopping:
            return "image-gate is stopping; it finishes the reviews it has"
        if not self.indexes.is_set():
            return "the policy and namespace indexes are still loading"
        if not self.webhook_listening:
            return "the webhook server is not listening yet"
        problem = self.watches.problem() if self.watches is not None else None
        return problem or "ready"
