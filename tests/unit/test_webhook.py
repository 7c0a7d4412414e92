"""The webhook's behaviour around evaluation: exemptions, UPDATEs, dry-run, readiness, events, warnings, logs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from image_gate.app.metrics import Metrics
from image_gate.core.admission import Admission
from image_gate.core.clock import Deadline
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, Unavailable
from image_gate.facts.resolver import CacheSettings, FactResolver
from image_gate.kube.controller import NAMESPACES_INDEX, POLICIES_INDEX, compile_or_error
from image_gate.kube.readiness import Readiness
from image_gate.kube.webhook import WebhookApp
from tests.fakeclouds import APP_V1, MAPPING, FakeHss, FakeSas, known
from tests.faketime import FakeTime

CENTOS = BaseImage("CentOS Linux", "7.9.2009", "sha256:" + "c" * 64)
UBUNTU = BaseImage("Ubuntu", "22.04", "sha256:" + "a" * 64)


class CatalogueFacts:
    """Answers from a dict, and remembers what was asked (the real resolver is tested against cloudsim)."""

    def __init__(self, bases: dict[str, BaseImage]) -> None:
        self.bases = bases
        self.asked: list[str] = []

    async def resolve(self, image: ImageReference, *, base_image: bool, digest: bool, deadline: Deadline) -> ImageFacts:
        self.asked.append(str(image))
        return ImageFacts(base_image=Found(self.bases[str(image)]) if base_image else None)


def pod(*images: str, name: str = "web", namespace: str = "shop", ephemeral: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
            "ephemeralContainers": [{"name": f"debug{i}", "image": image} for i, image in enumerate(ephemeral)],
        },
    }


def index(policies: dict[str, dict[str, Any]], namespaces: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        POLICIES_INDEX: {name: [compile_or_error(name, spec, 1)] for name, spec in policies.items()},
        NAMESPACES_INDEX: {name: [labels] for name, labels in (namespaces or {"shop": {"gate": "on"}}).items()},
    }


NO_CENTOS = {"baseImage": {"deniedOS": [{"name": "centos"}]}}
FACTS = {"docker.io/library/legacy:7": CENTOS, "docker.io/library/app:1": UBUNTU}


@pytest.fixture
def app() -> WebhookApp:
    readiness = Readiness()
    readiness.indexes.set()
    app = WebhookApp(Admission(CatalogueFacts(FACTS)), Metrics(), readiness, {"kube-system", "image-gate"})
    app.events = []  # type: ignore[attr-defined]
    app.post_event = lambda body, message: app.events.append((body["metadata"]["name"], message))  # type: ignore[attr-defined]
    return app


async def handle(app: WebhookApp, body: dict[str, Any], *, indexes: dict[str, Any], **kwargs: Any) -> list[str]:
    warnings: list[str] = []
    arguments: dict[str, Any] = {
        "kind": "Pod",
        "old": None,
        "operation": "CREATE",
        "subresource": None,
        "dry_run": False,
        "namespace": body["metadata"]["namespace"],
    }
    arguments.update(kwargs)
    await app.handle(body=body, indexes=indexes, warnings=warnings, **arguments)
    return warnings


async def test_a_violation_is_denied_with_403_and_an_event(app: WebhookApp) -> None:
    with pytest.raises(kopf.AdmissionError) as caught:
        await handle(app, pod("app:1", "legacy:7"), indexes=index({"no-centos": NO_CENTOS}))
    assert caught.value.code == 403
    assert str(caught.value) == (
        "image-gate denied Pod shop/web: 1 violation\n"
        '- container "c1" (image legacy:7): policy "no-centos" rule baseImage.deniedOS: '
        "found CentOS Linux 7.9.2009, expected not centos"
    )
    assert app.events == [("web", str(caught.value))]  # type: ignore[attr-defined]
    metrics = app.metrics.render().decode()
    assert (
        'image_gate_admission_requests_total{decision="denied",dry_run="false",kind="Pod",mode="Enforce"} 1.0'
        in metrics
    )


async def test_dry_run_is_judged_but_posts_no_event(app: WebhookApp) -> None:
    with pytest.raises(kopf.AdmissionError):
        await handle(app, pod("legacy:7"), indexes=index({"no-centos": NO_CENTOS}), dry_run=True)
    assert app.events == []  # type: ignore[attr-defined]
    assert 'dry_run="true"' in app.metrics.render().decode()


async def test_warn_mode_admits_with_warnings(app: WebhookApp) -> None:
    warnings = await handle(app, pod("legacy:7"), indexes=index({"no-centos": {**NO_CENTOS, "mode": "Warn"}}))
    assert warnings == [
        'image-gate (policy "no-centos" in Warn mode): container "c0" (image legacy:7): policy "no-centos" '
        "rule baseImage.deniedOS: found CentOS Linux 7.9.2009, expected not centos"
    ]


async def test_audit_mode_admits_silently_and_counts(app: WebhookApp) -> None:
    assert await handle(app, pod("legacy:7"), indexes=index({"no-centos": {**NO_CENTOS, "mode": "Audit"}})) == []
    assert 'image_gate_policy_findings_total{mode="Audit",policy="no-centos",problem="violation"} 1.0' in (
        app.metrics.render().decode()
    )


async def test_exempt_namespaces_are_not_even_looked_at(app: WebhookApp) -> None:
    for namespace in ("kube-system", "image-gate"):
        await handle(app, pod("legacy:7", namespace=namespace), indexes=index({"no-centos": NO_CENTOS}))
    assert app.admission._facts.asked == []  # type: ignore[attr-defined]


async def test_update_judges_only_new_images(app: WebhookApp) -> None:
    old = pod("legacy:7")
    relabelled = pod("legacy:7")
    await handle(app, relabelled, old=old, operation="UPDATE", indexes=index({"no-centos": NO_CENTOS}))
    debug = pod("legacy:7", ephemeral=("legacy:7",))
    with pytest.raises(kopf.AdmissionError) as caught:
        await handle(
            app,
            debug,
            old=old,
            operation="UPDATE",
            subresource="ephemeralcontainers",
            indexes=index({"no-centos": NO_CENTOS}),
        )
    assert 'container "debug0" (image legacy:7)' in str(caught.value)
    assert 'container "c0"' not in str(caught.value)


async def test_a_broken_policy_does_not_disturb_the_others(app: WebhookApp) -> None:
    broken = {"baseImage": {"allowedOS": [{"name": "x", "versions": [">=nope"]}]}}
    with pytest.raises(kopf.AdmissionError) as caught:
        await handle(app, pod("legacy:7"), indexes=index({"broken": broken, "no-centos": NO_CENTOS}))
    assert 'policy "no-centos"' in str(caught.value)
    assert 'policy "broken"' not in str(caught.value)


async def test_namespace_selector_uses_the_indexed_labels(app: WebhookApp) -> None:
    gated = {**NO_CENTOS, "match": {"namespaceSelector": {"matchLabels": {"gate": "on"}}}}
    with pytest.raises(kopf.AdmissionError):
        await handle(app, pod("legacy:7"), indexes=index({"gated": gated}))
    await handle(app, pod("legacy:7"), indexes=index({"gated": gated}, {"shop": {"gate": "off"}}))


async def test_workload_templates_are_judged(app: WebhookApp) -> None:
    cronjob = {
        "metadata": {"name": "nightly", "namespace": "shop"},
        "spec": {
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "job", "image": "legacy:7"}]}}}}
        },
    }
    with pytest.raises(kopf.AdmissionError) as caught:
        await handle(app, cronjob, kind="CronJob", indexes=index({"no-centos": NO_CENTOS}))
    assert str(caught.value).startswith("image-gate denied CronJob shop/nightly: 1 violation")


async def test_unreadable_objects_are_refused_with_400(app: WebhookApp) -> None:
    with pytest.raises(kopf.AdmissionError) as caught:
        await handle(
            app,
            {"metadata": {"name": "x", "namespace": "shop"}, "spec": {"containers": "nope"}},
            indexes=index({"no-centos": NO_CENTOS}),
        )
    assert (caught.value.code, str(caught.value)) == (
        400,
        "image-gate cannot read this Pod: spec.containers of the Pod is not a list",
    )


async def test_before_the_indexes_load_reviews_are_refused_not_allowed() -> None:
    app = WebhookApp(Admission(CatalogueFacts(FACTS)), Metrics(), Readiness(), (), startup_wait=0.05)
    with pytest.raises(kopf.AdmissionError) as caught:
        await handle(app, pod("app:1"), indexes=index({}))
    assert caught.value.code == 503
    assert "has not loaded the policies yet" in str(caught.value)


async def test_a_review_waiting_at_start_up_proceeds_once_ready() -> None:
    readiness = Readiness()
    app = WebhookApp(Admission(CatalogueFacts(FACTS)), Metrics(), readiness, (), startup_wait=5)
    task = asyncio.create_task(handle(app, pod("app:1"), indexes=index({"no-centos": NO_CENTOS})))
    await asyncio.sleep(0.01)
    assert not task.done()
    readiness.indexes.set()
    assert await task == []


DEBIAN_ONLY = {"baseImage": {"allowedOS": [{"name": "debian"}]}}


@pytest.mark.parametrize(("mode", "warned"), [("Enforce", True), ("Warn", True), ("Audit", False)])
async def test_a_verdict_on_stale_facts_says_so_in_a_warning_and_the_log_line(
    mode: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    time = FakeTime()
    hss, sas = FakeHss(time), FakeSas(time)
    known(hss, sas)
    resolver = FactResolver(MAPPING, hss, sas, clock=time, sleep=time.sleep)
    readiness = Readiness()
    readiness.indexes.set()
    app = WebhookApp(Admission(resolver, clock=time), Metrics(), readiness, ())
    policies = index({"debian": {**DEBIAN_ONLY, "mode": mode}})
    image = str(APP_V1)
    try:
        assert await handle(app, pod(image), indexes=policies) == []

        # 42 minutes on, the tag's facts are past their TTL (not their max_stale) and HSS is down.
        await time.advance(42 * 60)
        assert CacheSettings().tag_ttl < 42 * 60 < CacheSettings().max_stale
        outage = Unavailable(cloud="huawei", api="ListRegistryImages", detail="HTTP 503", request_id="r-1")
        hss.images[image] = outage
        # Only the second review's line: an earlier test may have left INFO on, so the first one's is kept too.
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="image_gate.admission"):
            warnings = await handle(app, pod(image), indexes=policies)
    finally:
        await resolver.aclose()

    stale_warning = (
        f"image-gate judged image {image} on facts from HSS 42 min old (its base image): "
        "huawei ListRegistryImages: unavailable: HTTP 503 (request id r-1)"
    )
    assert warnings == ([stale_warning] if warned else [])
    [record] = [r for r in caplog.records if r.name == "image_gate.admission"]
    review: dict[str, Any] = record.review  # type: ignore[attr-defined]
    assert review["decision"] == "allowed"
    assert review["stale"] == [
        {
            "image": image,
            "fact": "base image",
            "age_seconds": 42 * 60.0,
            "because": [
                {
                    "outcome": "unavailable",
                    "cloud": "huawei",
                    "api": "ListRegistryImages",
                    "detail": "HTTP 503",
                    "code": None,
                    "request_id": "r-1",
                }
            ],
        }
    ]


async def test_the_log_line_carries_findings_as_values(app: WebhookApp, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="image_gate.admission"), pytest.raises(kopf.AdmissionError):
        await handle(app, pod("legacy:7"), indexes=index({"no-centos": NO_CENTOS}))
    [record] = [r for r in caplog.records if r.name == "image_gate.admission"]
    review: dict[str, Any] = record.review  # type: ignore[attr-defined]
    assert (review["object"], review["decision"], review["stale"]) == ("shop/web", "denied", [])
    [finding] = review["findings"]
    assert finding["found"] == {"type": "os", "name": "CentOS Linux", "version": "7.9.2009"}
    assert finding["expected"] == {"type": "not_os", "os": {"name": "centos", "versions": []}}
