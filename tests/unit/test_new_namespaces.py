"""A namespace the index has not seen yet: its labels are read once from the API server, and never guessed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf
import pytest

from image_gate.app.metrics import Metrics
from image_gate.core.admission import Admission
from image_gate.kube.controller import NAMESPACES_INDEX, POLICIES_INDEX, compile_or_error
from image_gate.kube.kubeapi import ApiError
from image_gate.kube.namespaces import KEEP_SECONDS, NamespaceLabels
from image_gate.kube.readiness import Readiness
from image_gate.kube.webhook import WebhookApp
from tests.faketime import FakeTime
from tests.unit.test_webhook import FACTS, CatalogueFacts, pod

NO_CENTOS_WHERE_GATED = {
    "match": {"namespaceSelector": {"matchLabels": {"gate": "on"}}},
    "baseImage": {"deniedOS": [{"name": "centos"}]},
}


class ApiServer:
    """Namespaces' labels as the API server has them; a GET waits for ``gate`` when set."""

    def __init__(self, namespaces: dict[str, dict[str, str]]) -> None:
        self.namespaces = namespaces
        self.gets: list[str] = []
        self.gate: asyncio.Event | None = None

    async def get(self, name: str) -> Mapping[str, str]:
        self.gets.append(name)
        if self.gate is not None:
            await self.gate.wait()
        if name not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{name}" not found')
        return self.namespaces[name]


def indexes(namespaces: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        POLICIES_INDEX: {"no-centos": [compile_or_error("no-centos", NO_CENTOS_WHERE_GATED, 1)]},
        NAMESPACES_INDEX: {name: [labels] for name, labels in namespaces.items()},
    }


def webhook(api: ApiServer, *, clock: FakeTime | None = None, wait: float = 1.0) -> WebhookApp:
    readiness = Readiness()
    readiness.indexes.set()
    labels = NamespaceLabels(api.get, clock=clock or FakeTime())
    return WebhookApp(Admission(CatalogueFacts(FACTS)), Metrics(), readiness, (), startup_wait=wait, namespaces=labels)


async def review(app: WebhookApp, namespace: str, index: dict[str, Any]) -> None:
    await app.handle(
        kind="Pod",
        body=pod("legacy:7", namespace=namespace),
        old=None,
        operation="CREATE",
        subresource=None,
        dry_run=False,
        namespace=namespace,
        indexes=index,
        warnings=[],
    )


async def test_a_namespace_missing_from_the_index_is_judged_by_its_labels_from_the_api_server() -> None:
    api = ApiServer({"fresh": {"gate": "on"}})
    app = webhook(api)
    with pytest.raises(kopf.AdmissionError) as denied:
        await review(app, "fresh", indexes({}))
    assert denied.value.code == 403
    assert 'policy "no-centos" rule baseImage.deniedOS' in str(denied.value)
    assert api.gets == ["fresh"]


async def test_one_get_per_unknown_namespace_however_many_reviews_ask_at_once() -> None:
    api = ApiServer({"fresh": {"gate": "on"}})
    api.gate = asyncio.Event()
    app = webhook(api)
    reviews = [asyncio.ensure_future(review(app, "fresh", indexes({}))) for _ in range(20)]
    await asyncio.sleep(0.05)
    api.gate.set()
    results = await asyncio.gather(*reviews, return_exceptions=True)
    assert all(isinstance(result, kopf.AdmissionError) and result.code == 403 for result in results)
    assert api.gets == ["fresh"]
    # Answered from what was read, until the index has it; then the index answers.
    with pytest.raises(kopf.AdmissionError):
        await review(app, "fresh", indexes({}))
    assert api.gets == ["fresh"]
    await review(app, "fresh", indexes({"fresh": {"gate": "off"}}))  # relabelled: the index wins
    assert api.gets == ["fresh"]


async def test_what_was_read_is_kept_for_a_while_only() -> None:
    clock = FakeTime()
    labels = NamespaceLabels(ApiServer({"fresh": {"gate": "on"}}).get, clock=clock)
    assert await labels.labels({}, "fresh", wait=1.0) == {"gate": "on"}
    clock.now += KEEP_SECONDS - 1
    assert await labels.labels({}, "fresh", wait=1.0) == {"gate": "on"}
    assert labels.reads == 1
    clock.now += 2
    assert await labels.labels({}, "fresh", wait=1.0) == {"gate": "on"}
    assert labels.reads == 2


async def test_labels_that_cannot_be_read_refuse_the_review_when_a_policy_selects_by_label() -> None:
    api = ApiServer({})  # 404, as for RBAC trouble or an API server that does not answer
    with pytest.raises(kopf.AdmissionError) as refused:
        await review(webhook(api), "fresh", indexes({}))
    assert refused.value.code == 503
    assert str(refused.value) == (
        "image-gate cannot tell which policies apply in namespace fresh: it is new to image-gate and "
        "its labels could not be read from the API server; retry in a few seconds"
    )


async def test_a_slow_api_server_is_waited_for_within_the_start_up_wait_only() -> None:
    api = ApiServer({"fresh": {"gate": "on"}})
    api.gate = asyncio.Event()
    app = webhook(api, wait=0.05)
    with pytest.raises(kopf.AdmissionError) as refused:
        await asyncio.wait_for(review(app, "fresh", indexes({})), 1.0)
    assert refused.value.code == 503
    api.gate.set()  # the GET goes on and serves the next review
    await asyncio.sleep(0)
    with pytest.raises(kopf.AdmissionError) as denied:
        await review(app, "fresh", indexes({}))
    assert denied.value.code == 403
    assert api.gets == ["fresh"]


async def test_without_label_selecting_policies_an_unreadable_namespace_changes_nothing() -> None:
    api = ApiServer({})
    app = webhook(api)
    everywhere = {POLICIES_INDEX: {"all": [compile_or_error("all", {"baseImage": {"deniedOS": [{"name": "x"}]}}, 1)]}}
    await review(app, "fresh", {**everywhere, NAMESPACES_INDEX: {}})
