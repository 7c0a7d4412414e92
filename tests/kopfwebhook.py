"""
kopf's own admission function, wired in-process the way ``kopf.operator`` wires it for a webhook server.

``kopf.operator`` needs an API server; the admission path does not. This builds the
``fn`` kopf hands to its webhook server (``serve_admission_request`` with the
operator's settings, registry, insights, memories and indices bound), so tests run
image-gate's real handlers through kopf's real code without a cluster. It reaches
into kopf's internals on purpose: this is exactly what kopf's ``spawn_tasks`` does.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import kopf
from kopf._cogs.structs import ephemera, references
from kopf._core.engines import admission, indexing
from kopf._core.reactor import inventory

from image_gate.app.metrics import Metrics
from image_gate.core.admission import Admission
from image_gate.kube.controller import register_controller
from image_gate.kube.events import DenialEvents
from image_gate.kube.readiness import Readiness
from image_gate.kube.server import ReviewServer
from image_gate.kube.webhook import HANDLED_RESOURCES, WebhookApp, register_webhooks
from tests.reviews import review

__all__ = [
    "NoFacts",
    "kopf_webhook_fn",
    "operator_registry",
    "pod",
    "review",
    "serving",
    "serving_without_policies",
]


def kopf_webhook_fn(
    registry: kopf.OperatorRegistry,
    *,
    memories: inventory.ResourceMemories,
    settings: kopf.OperatorSettings | None = None,
) -> kopf.WebhookFn:
    """kopf's webhook function for ``registry``'s handlers, over empty indexes, keeping memos in ``memories``."""
    insights = references.Insights()
    insights.webhook_resources.update(
        references.Resource(group, version, plural, kind=kind, namespaced=True)
        for group, version, plural, kind in HANDLED_RESOURCES.values()
    )
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    fn: kopf.WebhookFn = functools.partial(
        admission.serve_admission_request,
        settings=settings or kopf.OperatorSettings(),
        registry=registry,
        insights=insights,
        memories=memories,
        memobase=ephemera.AnyMemo(ephemera.Memo()),
        indices=indexers.indices,
    )
    return fn


class NoFacts:
    """No policy is indexed in these tests, so nothing is ever looked up."""

    async def resolve(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no lookup expected")


def operator_registry(admission: Admission) -> kopf.OperatorRegistry:
    readiness = Readiness()
    readiness.indexes.set()
    registry = kopf.OperatorRegistry()
    register_controller(registry, readiness=readiness, metrics=Metrics(), events=DenialEvents())
    register_webhooks(registry, WebhookApp(admission, Metrics(), readiness, {"kube-system"}))
    return registry


async def serving(server: ReviewServer, fn: kopf.WebhookFn) -> AsyncIterator[str]:
    """Run ``server`` as kopf would (iterate it, then cancel it) and yield its URL meanwhile."""
    configs = server(fn)
    config = await anext(configs)

    async def serve_until_cancelled() -> None:
        await anext(configs)

    task = asyncio.create_task(serve_until_cancelled())
    try:
        yield str(config["url"])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def serving_without_policies() -> AsyncIterator[str]:
    """image-gate's real handlers, with no policy indexed and no facts, on plain HTTP on loopback; yield the URL."""
    server = ReviewServer(address="127.0.0.1", port=0, ssl_context=None, url_host="127.0.0.1")
    fn = kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=inventory.ResourceMemories())
    async for url in serving(server, fn):
        yield url


def pod(*, env_bytes: int = 0, containers: int = 1, name: str = "web") -> dict[str, Any]:
    env = [{"name": "PADDING", "value": "x" * env_bytes}] if env_bytes else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": "0d1f"},
        "spec": {"containers": [{"name": f"c{i}", "image": "nginx:1.27", "env": env} for i in range(containers)]},
    }
