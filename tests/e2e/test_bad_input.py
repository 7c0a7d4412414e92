"""Garbage at the webhook: a clear answer every time, never a crash, a hang or a silent allow."""

from __future__ import annotations

import copy
import json
import ssl
from typing import Any

import httpx
import pytest

from tests.e2e.imagegate import (
    UBUNTU_IMAGE,
    ImageGate,
    PolicyFactory,
    admission_review,
    pod_manifest,
    scoped_policy,
)

pytestmark = pytest.mark.e2e


def post(image_gate: ImageGate, path: str, body: bytes | dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(image_gate.ca_file)), timeout=15) as client:
        return client.post(f"{image_gate.url}/{path}", content=content, headers={"Content-Type": "application/json"})


def without(review: dict[str, Any], *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(review)
    target = changed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return changed


@pytest.fixture
def review(namespace: str, policies: PolicyFactory) -> dict[str, Any]:
    policies.apply(scoped_policy("no-centos", namespace, {"baseImage": {"deniedOS": [{"name": "CentOS"}]}}))
    return admission_review(pod_manifest("p", namespace, UBUNTU_IMAGE))


@pytest.mark.parametrize(
    ("make_body", "status", "text"),
    [
        (lambda r: b"{not json", 400, "the body is not JSON: Expecting property name enclosed in double quotes"),
        (lambda r: b"[]", 400, "the body is not an AdmissionReview\n"),
        (
            lambda r: {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
            400,
            "the AdmissionReview has no request, or its request names no resource\n",
        ),
        (
            lambda r: {**r, "apiVersion": "admission.k8s.io/v1beta1"},
            400,
            "image-gate answers admission.k8s.io/v1 AdmissionReviews, not admission.k8s.io/v1beta1\n",
        ),
        (
            lambda r: without(r, "request", "object"),
            400,
            "the review carries neither request.object nor request.oldObject\n",
        ),
        (lambda r: without(r, "request", "userInfo"), 400, "request.userInfo is missing\n"),
    ],
    ids=["not json", "a list", "no request", "v1beta1", "no object", "no userInfo"],
)
def test_a_body_that_is_no_admission_review_gets_a_400_that_says_why(
    image_gate: ImageGate, review: dict[str, Any], make_body: Any, status: int, text: str
) -> None:
    answer = post(image_gate, "pods", make_body(review))
    assert answer.status_code == status
    assert answer.text.startswith(text), answer.text
    assert image_gate.health("/healthz").status_code == 200


def test_a_wrong_path_is_an_error_not_a_silent_allow(image_gate: ImageGate, review: dict[str, Any]) -> None:
    answer = post(image_gate, "pod", review)
    assert (answer.status_code, answer.text) == (
        404,
        "image-gate has no webhook at /pod; its paths are /pods, /deployments, /statefulsets, /daemonsets, "
        "/replicasets, /jobs, /cronjobs\n",
    )


def test_a_resource_sent_to_another_kinds_path_is_an_error(image_gate: ImageGate, review: dict[str, Any]) -> None:
    answer = post(image_gate, "deployments", review)
    assert (answer.status_code, answer.text) == (
        400,
        "/deployments judges apps/deployments, not pods: check the ValidatingWebhookConfiguration's paths\n",
    )


def test_an_unreadable_pod_is_refused_with_the_field(image_gate: ImageGate, review: dict[str, Any]) -> None:
    broken = copy.deepcopy(review)
    broken["request"]["object"]["spec"] = "nope"
    response = image_gate.review("pods", broken)
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 400,
        "reason": "BadRequest",
        "message": "image-gate cannot read this Pod: spec of the Pod is not an object",
    }


def test_an_unparseable_image_is_denied_not_ignored(
    image_gate: ImageGate, namespace: str, review: dict[str, Any]
) -> None:
    odd = admission_review(pod_manifest("p", namespace, "Not An Image"))
    response = image_gate.review("pods", odd)
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        f"image-gate denied Pod {namespace}/p: 1 violation\n"
        '- container "p" (image Not An Image): policy "no-centos" rule image: '
        "found the image contains whitespace, expected a valid image reference"
    )
