"""README's "Running it" and "Checking images" show what image-gate prints, word for word."""

from __future__ import annotations

import json
import re

from image_gate.app.health import readiness_report
from image_gate.core.imagefacts import StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.messages import stale_warning
from image_gate.core.outcomes import Unavailable
from image_gate.facts.breaker import CircuitBreaker
from image_gate.kube.readiness import Readiness
from tests.chart.helm import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)^## ", README, re.S | re.M)
    assert found is not None, title
    return found.group(1)


def test_readyz_as_shown_is_what_a_ready_replica_answers() -> None:
    readiness = Readiness()
    readiness.indexes.set()
    readiness.webhook_listening = True
    status, text = readiness_report(readiness, [CircuitBreaker("huawei"), CircuitBreaker("aliyun")])
    assert status == 200
    assert f"$ curl -sk https://127.0.0.1:8443/readyz\n{text}```" in section("Running it")


def test_the_stale_warning_as_shown_is_the_one_image_gate_words() -> None:
    image = ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2")
    failure = Unavailable(cloud="huawei", api="ListRegistryImages", detail="HTTP 503")
    warning = stale_warning(image, StaleFact("base image", 42 * 60, (failure,)))
    shown = " ".join(section("Running it").split())  # the README wraps lines
    assert f"`{warning}`" in shown


def test_check_json_as_shown_has_the_documents_fields() -> None:
    [example] = re.findall(r"-o json\n(\{.*?\n\})\n```", section("Checking images from the command line"), re.S)
    document = json.loads(example.replace(", ...]", "]"))
    assert list(document) == ["allowed", "policies", "message", "warnings", "findings", "stale"]
    [finding] = document["findings"]
    assert finding["found"] == {"type": "os", "name": "Ubuntu", "version": "20.04"}
    assert finding["expected"]["type"] == "allowed_os"
