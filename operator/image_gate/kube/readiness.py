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

    @property
    def ready(self) -> bool:
        return self.indexes.is_set() and self.webhook_listening

    def reason(self) -> str:
        if not self.indexes.is_set():
            return "the policy and namespace indexes are still loading"
        if not self.webhook_listening:
            return "the webhook server is not listening yet"
        return "ready"
