"""
Kubernetes Events for denials, posted through kopf's own event poster.

kopf posts Events from a queue that it makes known to each object's handlers
through context variables; its admission handlers run in the webhook
server's tasks, which do not have them (``kopf.event`` there fails with a
``LookupError``). So a watch handler lends us its context once
(`capture`), and denials are posted inside a copy of it: same queue, same
background poster, same retries, and the admission response never waits
for the API server.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

__all__ = ["DenialEvents"]

logger = logging.getLogger(__name__)
_MAX_MESSAGE = 1024
"""Kubernetes truncates Event messages; a shorter one that says so reads better."""


class DenialEvents:
    def __init__(self) -> None:
        self._context: contextvars.Context | None = None

    def capture(self) -> None:
        """Call from any kopf watch handler: keeps the context kopf posts Events from."""
        if self._context is None:
            self._context = contextvars.copy_context()

    def post(self, body: Mapping[str, Any], message: str) -> None:
        """A Warning Event ``ImageGateDenied`` on the denied object (``kubectl get events`` shows it)."""
        if self._context is None:
            logger.warning("denial not posted as an Event: the operator is not watching yet")
            return
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 20] + " ... (see the logs)"
        target = kopf.Body(cast(kopf.RawBody, dict(body)))
        self._context.run(kopf.event, target, type="Warning", reason="ImageGateDenied", message=message)
