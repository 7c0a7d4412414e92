"""The review server in front of kopf's admission function: body limits, hostile bodies, internal errors.

The server runs in-process on loopback with image-gate's real handlers, called through kopf's real
admission function (`tests.kopfwebhook`), so what kopf does with a body is part of what is tested.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import kopf
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kopf._core.reactor.inventory import ResourceMemories

from image_gate.app.stopping import GracefulStop
from image_gate.core.admission import Admission, Review
from image_gate.core.evaluate import Subject
from image_gate.core.policy import CompiledPolicy
from image_gate.kube.readiness import Readiness
from image_gate.kube.server import DEFAULT_MAX_REVIEW_BYTES, ReviewServer, _answer
from image_gate.kube.webhook import guarded
from tests.kopfwebhook import (
    NoFacts,
    kopf_webhook_fn,
    operator_registry,
    pod,
    review,
    serving,
    serving_without_policies,
)

MiB = 1024 * 1024


class ExplodingAdmission(Admission):
    """An evaluation bug: the review raises something nobody planned for."""

    async def review(self, subject: Subject, policies: Sequence[CompiledPolicy]) -> Review:
        raise RuntimeError("internal detail: token=abc123")


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async for base in serving_without_policies():
        yield base


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def test_a_2_mib_update_review_is_judged(url: str, client: httpx.AsyncClient) -> None:
    big = pod(env_bytes=1 * MiB + 1000)
    body = json.dumps(review(big, operation="UPDATE", old=big)).encode()
    assert len(body) > 2 * MiB
    response = await client.post(f"{url}/pods", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["response"]["allowed"] is True


async def test_a_pod_with_5000_containers_is_judged(url: str, client: httpx.AsyncClient) -> None:
    response = await client.post(f"{url}/pods", json=review(pod(containers=5000, env_bytes=200)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("chunked", [False, True])
async def test_above_the_limit_is_a_413_that_says_the_limit(client: httpx.AsyncClient, chunked: bool) -> None:
    server = ReviewServer(address="127.0.0.1", port=0, ssl_context=None, url_host="127.0.0.1", max_review_bytes=MiB)
    fn = kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=ResourceMemories())
    body = json.dumps(review(pod(env_bytes=MiB))).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    async for url in serving(server, fn):
        response = await client.post(f"{url}/pods", content=chunks() if chunked else body)
    assert response.status_code == 413
    assert f"at most {MiB} bytes (--max-review-bytes)" in response.text


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": [value]}
    return value


HOSTILE_BODIES: dict[str, bytes] = {
    "deeply nested JSON": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deeply nested list": b"[" * 100_000 + b"]" * 100_000,
    "not UTF-8": b'{"kind": "\xff"}',
    "not JSON": b"<xml/>",
    "object is a string": json.dumps(review("a pod, honestly")).encode(),
    "oldObject is a list": json.dumps(review(pod(), operation="UPDATE", old=[1])).encode(),
    "no object at all": json.dumps(review()).encode(),
    "userInfo missing": json.dumps(review(pod(), userInfo=None)).encode(),
    "uid is a number": json.dumps(review(pod(), uid=7)).encode(),  # type: ignore[arg-type]
    "operation is a list": json.dumps(review(pod(), operation=["CREATE"])).encode(),  # type: ignore[arg-type]
    "subResource is an object": json.dumps(review(pod(), subResource={"a": 1})).encode(),
    "metadata is a string": json.dumps(review({"metadata": "x", "spec": {}})).encode(),
    "metadata.uid is an object": json.dumps(review({"metadata": {"uid": {"a": 1}}})).encode(),
    "metadata.namespace is a list": json.dumps(review({"metadata": {"namespace": ["a"]}})).encode(),
    "resource.version missing": json.dumps(review(pod(), resource={"group": "", "resource": "pods"})).encode(),
    "spec is a string": json.dumps(review({"metadata": {"name": "p", "namespace": "shop"}, "spec": "x"})).encode(),
    "containers is an object": json.dumps(review({"metadata": {}, "spec": {"containers": {"a": 1}}})).encode(),
    "an image is a number": json.dumps(review({"metadata": {}, "spec": {"containers": [{"image": 7}]}})).encode(),
    "deep object, CREATE": json.dumps(review(nested(400))).encode(),
    "deep object, UPDATE": json.dumps(review(nested(400), operation="UPDATE", old=nested(399))).encode(),
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
async def test_a_hostile_body_gets_a_verdict_or_a_4xx_that_says_why(
    url: str, client: httpx.AsyncClient, name: str
) -> None:
    response = await client.post(f"{url}/pods", content=HOSTILE_BODIES[name])
    if response.status_code == 200:
        assert response.json()["response"]["uid"] == "0d1f"
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert response.text.strip()
        assert "Internal" not in response.text


async def test_the_server_survives_hostile_bodies(url: str, client: httpx.AsyncClient) -> None:
    for body in HOSTILE_BODIES.values():
        await client.post(f"{url}/pods", content=body)
    assert (await client.post(f"{url}/pods", json=review(pod()))).json()["response"]["allowed"] is True


async def test_an_internal_error_is_an_http_500_without_its_text(client: httpx.AsyncClient) -> None:
    server = ReviewServer(address="127.0.0.1", port=0, ssl_context=None, url_host="127.0.0.1")
    fn = kopf_webhook_fn(operator_registry(ExplodingAdmission(NoFacts())), memories=ResourceMemories())
    async for url in serving(server, fn):
        response = await client.post(f"{url}/pods", json=review(pod()))
    assert response.status_code == 500
    assert "token" not in response.text
    assert "internal detail" not in response.text
    assert "its log has the details" in response.text


async def test_sigterm_drains_unready_closing_each_connection_then_stops(client: httpx.AsyncClient) -> None:
    readiness = Readiness()
    readiness.indexes.set()
    readiness.webhook_listening = True
    server = ReviewServer(address="127.0.0.1", port=0, ssl_context=None, url_host="127.0.0.1")
    stopping = GracefulStop(readiness=readiness, drain=server.drain, drain_seconds=0.3)
    fn = kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=ResourceMemories())
    async for url in serving(server, fn):
        before = await client.post(f"{url}/pods", json=review(pod()))
        assert before.headers.get("Connection", "keep-alive").lower() == "keep-alive"
        started = asyncio.get_running_loop().time()
        stopping.begin()  # what SIGTERM calls
        assert not readiness.ready
        assert readiness.reason() == "image-gate is stopping; it finishes the reviews it has"
        during = await client.post(f"{url}/pods", json=review(pod()))
        assert during.status_code == 200, "still judging while the endpoints catch up"
        assert during.headers["Connection"].lower() == "close", "the client reconnects elsewhere"
        await asyncio.wait_for(stopping.stop.wait(), timeout=5)
        assert asyncio.get_running_loop().time() - started >= 0.3


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
# Every place of a pod review a hostile or broken client could put anything at.
REVIEW_PATHS = [
    ("request",),
    *[("request", key) for key in review(pod())["request"]],
    ("request", "resource", "version"),
    ("request", "object", "metadata"),
    *[("request", "object", "metadata", key) for key in ("name", "namespace", "uid", "labels", "generateName")],
    ("request", "object", "spec"),
    ("request", "object", "spec", "containers"),
    ("request", "object", "spec", "initContainers"),
    ("request", "object", "spec", "ephemeralContainers"),
]


def judge_in_process(fn: kopf.WebhookFn) -> Callable[[Any], Awaitable[tuple[int, Any]]]:
    """The server's own request path without the socket: (HTTP status, body)."""

    class Request:
        def __init__(self, body: bytes) -> None:
            self.body = body
            self.content_length = len(body)
            self.headers = {"Content-Type": "application/json"}
            self.match_info = {"webhook": "pods"}

        async def read(self) -> bytes:
            return self.body

    async def judge(document: Any) -> tuple[int, Any]:
        try:
            response = await _answer(guarded(fn), Request(json.dumps(document).encode()), DEFAULT_MAX_REVIEW_BYTES)  # type: ignore[arg-type]
        except web.HTTPException as exc:
            return exc.status, exc.text
        assert response.body is not None
        return response.status, json.loads(response.body)  # type: ignore[arg-type]

    return judge


async def test_kopfs_copy_of_the_reviewed_object_copies_none_of_it() -> None:
    """kopf deep-copies the object after a review, for a patch a validating handler never writes
    (``Patch.as_json_patch``): the object's parts are handed back as they are, and judged unchanged."""
    seen: list[kopf.Body] = []
    registry = kopf.OperatorRegistry()

    @kopf.on.validate("", "v1", "pods", id="pods", registry=registry)
    async def remember(body: kopf.Body, **_: Any) -> None:
        seen.append(body)

    sent = pod(containers=3)
    status, answer = await judge_in_process(kopf_webhook_fn(registry, memories=ResourceMemories()))(review(sent))
    assert status == 200
    assert answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]
    (body,) = seen
    assert dict(body) == sent
    copied = copy.deepcopy(dict(body))  # what kopf's patch does with it
    assert copied["spec"] is body["spec"]
    assert copied["metadata"] is body["metadata"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_any_value_anywhere_in_a_review_is_a_verdict_or_a_4xx(data: st.DataObject) -> None:
    judge = judge_in_process(kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=ResourceMemories()))
    document = review(pod(), operation=data.draw(st.sampled_from(["CREATE", "UPDATE"])), old=pod())
    for path in data.draw(st.lists(st.sampled_from(REVIEW_PATHS), min_size=1, max_size=3)):
        target = document
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                break
            target = target[key]
        else:
            target[path[-1]] = data.draw(JSON_VALUES)
    status, body = await judge(document)
    if status == 200:
        assert body["response"]["uid"] == document["request"]["uid"]
        assert body["response"].get("status", {}).get("code", 200) != 500, body
    else:
        assert 400 <= status < 500, (status, body)
        assert body.strip()


class SlowAdmission(Admission):
    """A review that takes a while: still being judged when the server is told to stop."""

    def __init__(self, facts: NoFacts) -> None:
        super().__init__(facts)
        self.started = asyncio.Event()

    async def review(self, subject: Subject, policies: Sequence[CompiledPolicy]) -> Review:
        self.started.set()
        await asyncio.sleep(0.5)
        return await super().review(subject, policies)


async def test_stopping_finishes_the_reviews_in_flight(client: httpx.AsyncClient) -> None:
    admission = SlowAdmission(NoFacts())
    server = ReviewServer(address="127.0.0.1", port=0, ssl_context=None, url_host="127.0.0.1")
    configs = server(kopf_webhook_fn(operator_registry(admission), memories=ResourceMemories()))
    url = (await anext(configs))["url"]

    async def serve_until_cancelled() -> None:
        await anext(configs)

    serving_task = asyncio.create_task(serve_until_cancelled())
    in_flight = asyncio.create_task(client.post(f"{url}/pods", json=review(pod())))
    await asyncio.wait_for(admission.started.wait(), timeout=10)
    serving_task.cancel()  # what kopf does when the operator stops
    answer = await in_flight
    await asyncio.gather(serving_task, return_exceptions=True)
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True
    with pytest.raises(httpx.ConnectError):
        await client.post(f"{url}/pods", json=review(pod()))
