"""
A review server to flood, in a process of its own: ``python -m tests.integration.overload_server``.

image-gate's real review path: `ReviewServer` with its `LoadShedder`, kopf's own admission
function, image-gate's handlers, one Enforce policy, the real resolver and cache over the fake
clouds. A lookup of a tag not yet cached waits `COLD_SECONDS` for HSS (a cold lookup: no CPU,
only waiting); every tag of ``mirror.example.com/team/app`` is known. Plain HTTP on 127.0.0.1
(TLS would only make each review dearer). It prints its port on the first line of stdout, then
serves until killed. A process of its own, so that the flood's client does not share its CPU.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import kopf
from kopf._cogs.structs import ephemera, ids, references
from kopf._core.engines import admission, indexing
from kopf._core.reactor import inventory

from image_gate.app.metrics import Metrics
from image_gate.core.admission import Admission
from image_gate.facts.resolver import FactResolver
from image_gate.kube.controller import NAMESPACES_INDEX, POLICIES_INDEX, compile_or_error
from image_gate.kube.overload import LoadShedder
from image_gate.kube.server import ReviewServer
from image_gate.kube.webhook import HANDLED_RESOURCES
from tests.fakeclouds import MAPPING, FakeHss, FakeSas, known
from tests.faketime import FakeTime
from tests.kopfwebhook import operator_registry

COLD_SECONDS = 1.0
DEADLINE = 3.0
POLICY = {"match": {"images": ["mirror.example.com/**"]}, "baseImage": {"allowedOS": [{"name": "Debian"}]}}


class SlowHss(FakeHss):
    """HSS taking `COLD_SECONDS` of wall time per call: what a cold review waits for."""

    async def _delay(self) -> None:
        await asyncio.sleep(COLD_SECONDS)


async def serve() -> None:
    logging.basicConfig(level=logging.WARNING)  # the review line's cost is not what this measures
    fake_time = FakeTime()
    hss, sas = SlowHss(fake_time), FakeSas(fake_time)
    known(hss, sas)
    for tag in ("cold", "cold-2"):
        hss.images[f"mirror.example.com/team/app:{tag}"] = hss.images["mirror.example.com/team/app:v1"]
    admission_core = Admission(FactResolver(MAPPING, hss, sas), deadline=DEADLINE)
    registry = operator_registry(admission_core)
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    # What kopf's watches would index: the policy and the namespace.
    indexers[ids.HandlerId(POLICIES_INDEX)].replace((None, "gate", "u1"), {"gate": compile_or_error("gate", POLICY, 1)})
    namespace = {"shop": {"kubernetes.io/metadata.name": "shop"}}
    indexers[ids.HandlerId(NAMESPACES_INDEX)].replace((None, "shop", "u2"), namespace)
    insights = references.Insights()
    insights.webhook_resources.update(
        references.Resource(group, version, plural, kind=kind, namespaced=True)
        for group, version, plural, kind in HANDLED_RESOURCES.values()
    )
    fn = functools.partial(
        admission.serve_admission_request,
        settings=kopf.OperatorSettings(),
        registry=registry,
        insights=insights,
        memories=inventory.ResourceMemories(),
        memobase=ephemera.AnyMemo(ephemera.Memo()),
        indices=indexers.indices,
    )
    metrics = Metrics()
    server = ReviewServer(
        address="127.0.0.1",
        port=0,
        ssl_context=None,
        url_host="127.0.0.1",
        shedder=LoadShedder(default_budget=DEADLINE, lookups=admission_core),
        on_shed=metrics.review_shed,
    )
    configs = server(fn)
    await anext(configs)
    print(server.port, flush=True)
    await anext(configs)


if __name__ == "__main__":
    asyncio.run(serve())
