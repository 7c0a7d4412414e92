"""Fuzz target 3: review bodies, through image-gate's real HTTPS webhook server (see tests/fuzz/webhook.py).

Random JSON, deeply nested JSON, bytes that are not JSON or not UTF-8, AdmissionReviews with fields
replaced by anything (an object that is a string, containers that are not a list, odd images, huge
strings, unicode), reviews up to past the body limit, under any content type and at any path. Every
answer is:

* a 200 carrying an AdmissionReview response: the request's uid echoed, ``allowed`` a boolean, and a
  status with a message when denied; or
* a 4xx whose body says why;
* never a 5xx: the facts here are fixed and cannot fail, so an internal error would be a bug (the
  server words one as its internal-error text, never a bare aiohttp 500);
* never later than the review's deadline plus a margin (the client's timeout);

and the server answers a good review after all of them.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from image_gate.kube.webhook import HANDLED_RESOURCES
from tests.fuzz.cases import count, fuzz
from tests.fuzz.policies import EXAMPLE_POLICIES
from tests.fuzz.test_fuzz_images import ANY_TEXT
from tests.fuzz.webhook import NAMESPACE, RunningWebhook, running_webhook
from tests.image_strategies import images, spellings

DEADLINE = 3.0
"""The review's deadline (image-gate's default)."""
STARTUP_WAIT = 1.0
"""WebhookApp's wait for indexes and namespaces, which comes on top of the deadline."""
MARGIN = 6.0
"""For a loaded CI machine: a 4 MiB body is read, parsed and judged on a shared core."""
CLIENT_TIMEOUT = DEADLINE + STARTUP_WAIT + MARGIN
MiB = 1024 * 1024
INTERNAL_ERROR = "image-gate failed while judging this review; its log has the details"


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWebhook]:
    with running_webhook(tmp_path_factory.mktemp("webhook-tls"), deadline=DEADLINE) as running:
        yield running


@pytest.fixture(scope="module")
def client(webhook: RunningWebhook) -> Iterator[httpx.Client]:
    """A client that verifies the server, as the API server does with the caBundle."""
    context = ssl.create_default_context(cafile=str(webhook.ca_file))
    with httpx.Client(base_url=webhook.url, verify=context, timeout=CLIENT_TIMEOUT) as client:
        yield client


# -- what is sent ---------------------------------------------------------------------------------

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
_HUGE_STRING = st.builds(lambda size, piece: piece * size, st.integers(1, 300_000), st.sampled_from(["x", "é", "🐳"]))
HOSTILE_VALUES: st.SearchStrategy[Any] = st.one_of(
    JSON,
    ANY_TEXT,
    _HUGE_STRING,
    st.sampled_from(["a pod, honestly", "", "\x00", "\ud7ff\ue000", "1e999", "NaN"]),
)
IMAGES: st.SearchStrategy[Any] = st.one_of(
    images().map(lambda image: image.text),
    images().flatmap(spellings),
    st.sampled_from(["nginx:1.27", "swr.cn-north-4.myhuaweicloud.com/shop/web:1", "a" * 64, "x@invaliddigest:1"]),
    ANY_TEXT,
    JSON,
)
_PATHS = st.sampled_from(["pods"] * 6 + sorted(HANDLED_RESOURCES) + ["", "nope", "pods/x", "PODS", "p%C3%B6ds"])
_CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "",
    ]
)
_CONTENT_ENCODINGS = st.sampled_from(["", "", "", "", "", "identity", "x-bogus", "br", "gzip", "deflate"])
"""The body is never encoded: an encoding it claims is a lie the server must answer with a 4xx, or ignore."""
# Every place of a review a hostile or broken client could put anything at.
_REVIEW_PATHS: tuple[tuple[str, ...], ...] = (
    ("request",),
    *(("request", key) for key in ("uid", "kind", "resource", "namespace", "operation", "userInfo", "object")),
    ("request", "oldObject"),
    ("request", "dryRun"),
    ("request", "subResource"),
    ("request", "resource", "version"),
    ("request", "object", "metadata"),
    *(("request", "object", "metadata", key) for key in ("name", "namespace", "uid", "labels", "generateName")),
    ("request", "object", "spec"),
    ("request", "object", "spec", "containers"),
    ("request", "object", "spec", "initContainers"),
    ("request", "object", "spec", "ephemeralContainers"),
    ("request", "object", "spec", "containers", "0"),
    ("request", "object", "spec", "containers", "0", "image"),
    ("request", "object", "spec", "containers", "0", "name"),
    ("apiVersion",),
    ("kind",),
)


def _pod(container_images: list[Any], env_bytes: int) -> dict[str, Any]:
    env = [{"name": "PADDING", "value": "x" * env_bytes}] if env_bytes else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": NAMESPACE, "uid": "0d1f"},
        "spec": {
            "containers": [{"name": f"c{i}", "image": image, "env": env} for i, image in enumerate(container_images)]
        },
    }


def _review(obj: Any, *, uid: str, operation: str, old: Any) -> dict[str, Any]:
    request = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": NAMESPACE,
        "operation": operation,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _child(parent: Any, key: str) -> Any:
    """``parent[key]`` in a JSON document, None where there is no such place (an earlier mutation removed it)."""
    if isinstance(parent, dict):
        return parent.get(key)
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return parent[int(key)]
    return None


@st.composite
def mutated_reviews(draw: st.DrawFn) -> dict[str, Any]:
    """A pod review as the API server sends it, then 0-3 of its places replaced by anything."""
    padding = draw(st.sampled_from([0] * 12 + [100_000, 1_100_000]))
    container_images = draw(st.lists(IMAGES, min_size=1, max_size=4))
    operation = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]))
    old = _pod(draw(st.lists(IMAGES, max_size=2)), 0) if operation == "UPDATE" else None
    document = _review(_pod(container_images, padding), uid=draw(st.uuids()).hex, operation=operation, old=old)
    for path in draw(st.lists(st.sampled_from(_REVIEW_PATHS), max_size=3)):
        parent: Any = document
        for key in path[:-1]:
            parent = _child(parent, key)
        key = path[-1]
        if isinstance(parent, dict):
            parent[key] = draw(HOSTILE_VALUES)
        elif isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
            parent[int(key)] = draw(HOSTILE_VALUES)
    return document


def _nested(depth: int, opener: str, closer: str, balanced: bool) -> bytes:
    return (opener * depth + "1" + (closer * depth if balanced else "")).encode()


DEEPLY_NESTED = st.builds(
    _nested,
    st.integers(1, 200_000),
    st.sampled_from(
        ['{"a":', "[", '{"request":', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","r":[']
    ),
    st.sampled_from(["}", "]", "}", "]}"]),
    st.booleans(),
)
BODIES: st.SearchStrategy[bytes] = st.one_of(
    mutated_reviews().map(lambda document: json.dumps(document).encode()),
    mutated_reviews().map(lambda document: json.dumps(document).encode()),
    JSON.map(lambda document: json.dumps(document).encode()),
    DEEPLY_NESTED,
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"null", b'"AdmissionReview"', b'{"kind": "\xff"}', b"\xef\xbb\xbf{}"]),
)


# -- what must come back -----------------------------------------------------------------------------


_NESTING_READ = 1000
"""Brackets beyond which the uid is not looked for: such a body is no review, and json's RecursionError would
leave CPython 3.11's recursion counters askew (pytest's assertion rewriting then fails with a SystemError)."""


def _sent_uid(body: bytes) -> object:
    if body.count(b"[") + body.count(b"{") > _NESTING_READ:
        return None
    try:
        return json.loads(body)["request"]["uid"]
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def check_answer(response: httpx.Response, body: bytes, seconds: float) -> None:
    status = response.status_code
    where = (status, response.text[:300], body[:300])
    assert seconds < CLIENT_TIMEOUT, where
    if status == 200:
        answer = response.json()
        assert answer["apiVersion"] == "admission.k8s.io/v1", where
        assert answer["kind"] == "AdmissionReview", where
        verdict = answer["response"]
        assert verdict["uid"] == _sent_uid(body), where
        assert isinstance(verdict["allowed"], bool), where
        if not verdict["allowed"]:
            assert isinstance(verdict["status"]["message"], str), where
            assert verdict["status"]["message"].strip(), where
            assert verdict["status"]["code"] in (400, 403, 503), where
        return
    assert status < 500, where  # the facts cannot fail here: an internal error would be a bug
    assert status >= 400, where
    assert response.text.strip(), where


def _post(
    client: httpx.Client, path: str, body: bytes, content_type: str, encoding: str = ""
) -> tuple[httpx.Response, float]:
    headers = {"Content-Type": content_type} if content_type else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    started = time.monotonic()
    response = client.post(f"/{path}", content=body, headers=headers)
    return response, time.monotonic() - started


@fuzz(1200)
@given(body=BODIES, path=_PATHS, content_type=_CONTENT_TYPES, encoding=_CONTENT_ENCODINGS)
def test_any_body_gets_a_verdict_or_a_4xx_that_says_why(
    client: httpx.Client, body: bytes, path: str, content_type: str, encoding: str
) -> None:
    count("reviews: any body")
    response, seconds = _post(client, path, body, content_type, encoding)
    event(f"HTTP {response.status_code}")
    check_answer(response, body, seconds)


@fuzz(20)
@given(size=st.sampled_from([3 * MiB, 4 * MiB - 1000, 4 * MiB + 1, 5 * MiB]), chunked=st.booleans())
def test_big_reviews_are_judged_or_refused_with_the_limit(client: httpx.Client, size: int, chunked: bool) -> None:
    count("reviews: big bodies")
    body = json.dumps(_review(_pod(["nginx:1.27"], size), uid="big", operation="CREATE", old=None)).encode()
    content: Any = body
    if chunked:
        content = iter([body[start : start + 256 * 1024] for start in range(0, len(body), 256 * 1024)])
    started = time.monotonic()
    response = client.post("/pods", content=content, headers={"Content-Type": "application/json"})
    seconds = time.monotonic() - started
    if len(body) > 4 * MiB:
        assert response.status_code == 413, response.text[:300]
        assert f"at most {4 * MiB} bytes" in response.text
    else:
        check_answer(response, body, seconds)
        assert response.status_code == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_that_lies_about_its_encoding_is_a_4xx(client: httpx.Client, encoding: str) -> None:
    """Found by the campaign: got a bare 500 (aiohttp's decompressor raised inside the read); now a 415."""
    count("reviews: lying encodings")
    body = b"\x99-BV\x07"  # found by the campaign: not gzip, not deflate
    response, seconds = _post(client, "pods", body, "application/json", encoding)
    check_answer(response, body, seconds)


def test_a_body_that_lies_about_deflate_is_answered_in_time(webhook: RunningWebhook) -> None:
    """Found by the campaign: about half the time this body was never answered (aiohttp's decompressor)."""
    count("reviews: lying encodings")
    body = _nested(1406, '{"a":', "]}", False)
    context = ssl.create_default_context(cafile=str(webhook.ca_file))
    # Ten tries: before the fix each hung about half the time (12 s observed), so ten answers in a row hold it.
    with httpx.Client(base_url=webhook.url, verify=context, timeout=DEADLINE + 1.0) as client:
        for _ in range(10):
            response = client.post(
                "/pods", content=body, headers={"Content-Encoding": "deflate", "Content-Type": "application/json"}
            )
            assert 400 <= response.status_code < 500, response.text[:300]


def test_the_server_still_judges_after_the_campaign(webhook: RunningWebhook, client: httpx.Client) -> None:
    """Last in the module: the loop is alive and answers both an allowed and a judged review."""
    assert webhook.thread.is_alive()
    assert EXAMPLE_POLICIES, "the example policies are indexed"
    allowed = _review(_pod(["nginx:1.27"], 0), uid="good", operation="CREATE", old=None)
    response = client.post("/pods", json=allowed)
    assert response.status_code == 200
    assert response.json()["response"] == {"uid": "good", "allowed": True}
    judged = _review(
        _pod(["swr.cn-north-4.myhuaweicloud.com/shop/web:1"], 0), uid="judged", operation="CREATE", old=None
    )
    response = client.post("/pods", json=judged)
    assert response.status_code == 200
    assert response.json()["response"]["uid"] == "judged"
