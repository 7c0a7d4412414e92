"""
Whether this replica may judge reviews yet.

Kept apart from the controller so that the health server can read it without importing kopf.
"""

from __future__ import annotations

import asyncio

__all__ = ["Readiness"]


class Readiness:
    """Set once the indexes are complete; read by the webhook and ``/readyz``."""

    def __init__(self) -> None:
        self.indexes = asyncio.Event()
        self.webhook_listening = False
        self.stopping = False
        """Set on SIGTERM: the replica still judges reviews while the Service stops sending them."""

    @property
    def ready(self) -> bool:
        return self.indexes.is_set() and self.webhook_listening and not self.stopping

    def reason(self) -> str:
        if self.stopping:
            return "image-gate is stopping; it finishes the reviews it has"
        if not self.indexes.is_set():
            return "the policy and namespace indexes are still loading"
        if not self.webhook_listening:
            return "the webhook server is not listening yet"
        return "ready"
