"""image-gate's webhook as production runs it, in-process on 127.0.0.1 over HTTPS, on its own event loop.

The production path: `ReviewServer` with a `ReloadingContext` (a development certificate), kopf's
admission function over the handlers `register_controller` and `register_webhooks` register, and
kopf's indexes filled through kopf's own `index_resource` (what its watches call) with the example
policies and a namespace whose labels put them all in force. Only the clouds are replaced, by
`FixedFacts`. The server runs on a thread of its own, so the fuzz target is an ordinary client in
another thread, as the API server is: a server loop that died or hung shows as a connection error or a
client timeout, not as a test that hangs with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kopf
from kopf._cogs.structs import bodies, ephemera, references
from kopf._core.engines import admission, indexing
from kopf._core.reactor.inventory import ResourceMemories

from image_gate.app.certs import ReloadingContext, generate_development_certificate
from image_gate.app.metrics import Metrics
from image_gate.core.admission import Admission
from image_gate.kube.controller import POLICY_RESOURCE, register_controller
from image_gate.kube.events import DenialEvents
from image_gate.kube.readiness import Readiness
from image_gate.kube.server import ReviewServer
from image_gate.kube.webhook import HANDLED_RESOURCES, WebhookApp, register_webhooks
from tests.fuzz.facts import FixedFacts
from tests.fuzz.policies import EXAMPLE_DOCUMENTS, IN_FORCE_LABELS

__all__ = ["RunningWebhook", "running_webhook"]

NAMESPACE = "shop"


@dataclass(frozen=True)
class RunningWebhook:
    url: str
    ca_file: Path
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop


def _resource(group: str, version: str, plural: str, kind: str) -> references.Resource:
    return references.Resource(group, version, plural, kind=kind, namespaced=plural != "namespaces")


async def _index(
    indexers: indexing.OperatorIndexers, registry: kopf.OperatorRegistry, resource: references.Resource, body: Any
) -> None:
    """One object into kopf's indexes, the way kopf's watch stream puts it there."""
    await indexing.index_resource(
        indexers=indexers,
        registry=registry,
        settings=kopf.OperatorSettings(),
        resource=resource,
        raw_event={"type": None, "object": body},
        memory=indexing.IndexingMemory(),
        logger=logging.getLogger("image_gate.fuzz"),
        memo=ephemera.AnyMemo(ephemera.Memo()),
        body=bodies.Body(body),
    )


async def _webhook_fn(deadline: float) -> kopf.WebhookFn:
    readiness = Readiness()
    readiness.indexes.set()
    registry = kopf.OperatorRegistry()
    register_controller(registry, readiness=readiness, metrics=Metrics(), events=DenialEvents())
    register_webhooks(registry, WebhookApp(Admission(FixedFacts(), deadline=deadline), Metrics(), readiness, set()))
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    policies = _resource(*POLICY_RESOURCE, kind="ImageGatePolicy")
    for document in EXAMPLE_DOCUMENTS:
        await _index(indexers, registry, policies, {**document, "metadata": {**document["metadata"], "generation": 1}})
    namespace = {"metadata": {"name": NAMESPACE, "labels": IN_FORCE_LABELS}}
    await _index(indexers, registry, _resource("", "v1", "namespaces", "Namespace"), namespace)
    insights = references.Insights()
    insights.webhook_resources.update(_resource(*spec) for spec in HANDLED_RESOURCES.values())
    fn: kopf.WebhookFn = functools.partial(
        admission.serve_admission_request,
        settings=kopf.OperatorSettings(),
        registry=registry,
        insights=insights,
        memories=ResourceMemories(),
        memobase=ephemera.AnyMemo(ephemera.Memo()),
        indices=indexers.indices,
    )
    return fn


@contextmanager
def running_webhook(directory: Path, *, deadline: float) -> Iterator[RunningWebhook]:
    """Serve until the block ends; the server's own failures surface when it stops."""
    certificate = generate_development_certificate(directory, ["127.0.0.1"], days=1)
    assert certificate.ca_file is not None
    tls = ReloadingContext(certificate)
    loop = asyncio.new_event_loop()
    listening: Future[str] = Future()
    stop = asyncio.Event()

    async def serve() -> None:
        server = ReviewServer(address="127.0.0.1", port=0, ssl_context=tls.context, url_host="127.0.0.1")
        # An async generator (kopf iterates it); typed as the iterator kopf's protocol names.
        configs = cast(AsyncGenerator[kopf.WebhookClientConfig, None], server(await _webhook_fn(deadline)))
        try:
            config = await anext(configs)
            listening.set_result(str(config["url"]))
            serving = asyncio.ensure_future(anext(configs))
            await stop.wait()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        except BaseException as exc:
            if not listening.done():
                listening.set_exception(exc)
            raise
        finally:
            await configs.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="fuzzed webhook", daemon=True)
    thread.start()
    try:
        yield RunningWebhook(listening.result(timeout=30), certificate.ca_file, thread, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
