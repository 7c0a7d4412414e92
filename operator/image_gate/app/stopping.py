"""
SIGTERM without dropped reviews: unready first, keep judging while the Service catches up, then stop.

When Kubernetes deletes a pod it sends SIGTERM and, at the same time, starts
removing the pod from the Service's endpoints; the API server keeps sending
reviews to this replica until that change reaches it. So on SIGTERM image-gate:

1. says not ready (``/readyz`` 503), so the endpoints drop it if they have not;
2. keeps judging for ``drain_seconds``, each answer closing its connection so the
   API server reconnects (to a replica that is not stopping) instead of reusing it;
3. then lets kopf stop: the listener closes and reviews in flight finish;
4. exits 0.

A second SIGTERM skips the rest of the wait. SIGINT (Ctrl+C) keeps kopf's
immediate stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from image_gate.kube.readiness import Readiness

__all__ = ["GracefulStop"]

logger = logging.getLogger(__name__)


class GracefulStop:
    """Turns SIGTERM into a drain; ``stop`` is the flag kopf's tasks stop on."""

    def __init__(self, *, readiness: Readiness, drain: Callable[[], None], drain_seconds: float) -> None:
        self.readiness = readiness
        self.drain = drain
        self.drain_seconds = drain_seconds
        self.stop = asyncio.Event()

    def install(self) -> None:
        """Take SIGTERM over (call after ``kopf.spawn_tasks``, which installs its own handler)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.begin)

    def begin(self) -> None:
        if self.readiness.stopping:
            logger.info("SIGTERM again: stopping now")
            self.stop.set()
            return
        logger.info("SIGTERM: not ready; judging reviews for %g s more, then stopping", self.drain_seconds)
        self.readiness.stopping = True
        self.drain()
        asyncio.get_running_loop().call_later(self.drain_seconds, self.stop.set)
