"""
The labels of a namespace the index has not seen yet, read from the API server.

The namespace index is only as current as kopf's watch: a namespace applied
together with a workload in it (one ``kubectl apply`` of one file) reaches the
webhook before the watch event reaches the index. Judged as if it had no
labels, the workload would escape every policy that selects namespaces by
label. So for a namespace missing from the index the webhook asks the API
server, bounded:

* one GET per unknown namespace at a time (single flight: concurrent reviews
  of one new namespace wait for the same answer);
* the answer is kept until the index has the namespace (then the index
  answers, and the entry is dropped) or for `KEEP_SECONDS`, whichever is first;
  at most `MAX_ENTRIES` namespaces are kept;
* the caller waits a short time only; a GET that does not answer in time
  goes on and serves the next review.

No answer (a timeout, an error, no such namespace) is ``None``: the caller
must not judge the workload as if its namespace had no labels.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from image_gate.core.clock import Clock, monotonic
from image_gate.kube.kubeapi import ApiError, KubeApi

__all__ = ["KEEP_SECONDS", "MAX_ENTRIES", "NamespaceLabels", "read_namespace_labels"]

logger = logging.getLogger(__name__)

KEEP_SECONDS = 60.0
"""How long a namespace's labels read from the API server are used while the index lacks it. The index
catches up within seconds; a namespace relabelled meanwhile is seen again after this."""
MAX_ENTRIES = 1024

GetLabels = Callable[[str], Awaitable[Mapping[str, str]]]
"""Reads one namespace's labels from the API server; raises `ApiError` when it cannot."""


def read_namespace_labels(api: KubeApi) -> GetLabels:
    """``GET /api/v1/namespaces/{name}``: the namespace's labels (the ClusterRole grants ``get``)."""

    async def get(name: str) -> Mapping[str, str]:
        namespace = await api.request("GET", f"/api/v1/namespaces/{name}")
        labels: Any = namespace.get("metadata", {}).get("labels") or {}
        return {str(key): str(value) for key, value in labels.items()}

    return get


class NamespaceLabels:
    """A namespace's labels: from the index when it has them, else from the API server (see the module)."""

    def __init__(self, get: GetLabels, *, clock: Clock = monotonic) -> None:
        self._get = get
        self._clock = clock
        self._known: OrderedDict[str, tuple[float, Mapping[str, str]]] = OrderedDict()
        self._in_flight: dict[str, asyncio.Task[Mapping[str, str] | None]] = {}
        self.reads = 0
        """GETs made, for tests and the log."""

    async def labels(self, index: Mapping[str, Any], namespace: str, *, wait: float) -> Mapping[str, str] | None:
        """The labels of ``namespace``; None when the index lacks it and the API server did not say in ``wait``."""
        for labels in index.get(namespace, ()):
            self._known.pop(namespace, None)  # the index has caught up
            return dict(labels)
        known = self._known.get(namespace)
        if known is not None and self._clock() - known[0] < KEEP_SECONDS:
            return known[1]
        task = self._in_flight.get(namespace)
        if task is None:
            task = self._in_flight[namespace] = asyncio.ensure_future(self._read(namespace))
            task.add_done_callback(lambda _: self._in_flight.pop(namespace, None))
        if wait <= 0:
            return None
        done, _ = await asyncio.wait({task}, timeout=wait)  # never cancels the shared GET
        return task.result() if done else None

    async def _read(self, namespace: str) -> Mapping[str, str] | None:
        self.reads += 1
        try:
            labels = await self._get(namespace)
        except ApiError as exc:
            logger.warning(
                "could not read the labels of namespace %s, which the index does not have yet: %s", namespace, exc
            )
            return None
        logger.info("namespace %s is not in the index yet: its labels were read from the API server", namespace)
        self._known[namespace] = (self._clock(), labels)
        self._known.move_to_end(namespace)
        while len(self._known) > MAX_ENTRIES:
            self._known.popitem(last=False)
        return labels
