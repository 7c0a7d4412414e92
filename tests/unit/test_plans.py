"""Plans and verdicts remembered per (policy set, namespace, containers), reused only while nothing changed."""

from __future__ import annotations

import dataclasses
from typing import Any

from image_gate.core.evaluate import Subject, decide, plan
from image_gate.core.imagefacts import ImageFacts, StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found
from image_gate.core.plans import PlanCache
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container

IMAGE = "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
REFERENCE = ImageReference.parse(IMAGE)
UBUNTU = BaseImage("Ubuntu", "22.04", "sha256:" + "a" * 64)
CENTOS = BaseImage("CentOS Linux", "7.9.2009", "sha256:" + "b" * 64)
SPEC: dict[str, Any] = {
    "match": {"images": ["swr.*.myhuaweicloud.com/**"]},
    "baseImage": {"deniedOS": [{"name": "CentOS"}]},
}
TEAM_ONLY = {**SPEC, "match": {**SPEC["match"], "namespaceSelector": {"matchLabels": {"team": "a"}}}}


def subject(
    name: str = "web-1", *, labels: dict[str, str] | None = None, images: tuple[str, ...] = (IMAGE,)
) -> Subject:
    containers = tuple(Container("container", f"c{n}", image) for n, image in enumerate(images))
    return Subject("Pod", f"shop/{name}", "shop", labels or {"team": "a"}, containers)


def test_pods_of_one_workload_share_a_plan_under_their_own_names() -> None:
    cache, policies = PlanCache(), [compile_policy("no-centos", SPEC)]
    first = cache.remembered(subject("web-1"), policies)
    second = cache.remembered(subject("web-2"), policies)
    assert second is first
    the_plan = second.plan_for(subject("web-2"))
    assert the_plan.subject.display_name == "shop/web-2"
    assert the_plan == plan(subject("web-2"), policies)


def test_a_recompiled_policy_or_other_labels_or_containers_get_a_new_plan() -> None:
    cache = PlanCache()
    policies = [compile_policy("team", TEAM_ONLY)]
    covered = cache.remembered(subject(labels={"team": "a"}), policies)
    assert covered.needs  # the namespace is selected: the base image is needed
    uncovered = cache.remembered(subject(labels={"team": "b"}), policies)
    assert not uncovered.needs
    assert cache.remembered(subject(images=(IMAGE, IMAGE)), policies) is not covered
    recompiled = [compile_policy("team", TEAM_ONLY)]  # an edit: a new object, equal or not
    assert cache.remembered(subject(labels={"team": "a"}), recompiled) is not covered


def test_the_verdict_is_reused_only_for_the_same_facts() -> None:
    cache, policies = PlanCache(), [compile_policy("no-centos", SPEC)]
    remembered = cache.remembered(subject(), policies)
    the_plan = remembered.plan_for(subject())
    allowed = remembered.decide(the_plan, {REFERENCE: ImageFacts(base_image=Found(UBUNTU))})
    assert allowed.allowed
    # Equal facts (a new object from the cache, as every review resolves them again): the same verdict.
    assert remembered.decide(the_plan, {REFERENCE: ImageFacts(base_image=Found(UBUNTU))}) is allowed
    # The fact changed (a refreshed tag now points at another image): judged again.
    denied = remembered.decide(the_plan, {REFERENCE: ImageFacts(base_image=Found(CENTOS))})
    assert not denied.allowed
    assert denied == decide(the_plan, {REFERENCE: ImageFacts(base_image=Found(CENTOS))})
    # The same value gone stale (the cloud failed): not the same facts either.
    stale = ImageFacts(base_image=Found(CENTOS), stale=(StaleFact("base image", 700.0),))
    assert remembered.decide(the_plan, {REFERENCE: stale}) is not denied


def test_big_objects_are_planned_every_time_and_the_cache_is_bounded() -> None:
    cache, policies = PlanCache(size=2, max_containers=3), [compile_policy("no-centos", SPEC)]
    cache.remembered(subject(images=(IMAGE,) * 4), policies)
    assert len(cache) == 0
    first = cache.remembered(subject(images=(IMAGE,)), policies)
    cache.remembered(subject(images=(IMAGE,) * 2), policies)
    cache.remembered(subject(images=(IMAGE,) * 3), policies)  # the least recent, the first, goes
    assert len(cache) == 2
    assert cache.remembered(subject(images=(IMAGE,)), policies) is not first


def test_a_plan_holds_its_policies_so_their_ids_cannot_be_reused() -> None:
    cache = PlanCache()
    policies = [compile_policy("no-centos", SPEC)]
    remembered = cache.remembered(subject(), policies)
    assert remembered.policies == tuple(policies)
    assert all(a is b for a, b in zip(remembered.policies, policies, strict=True))
    assert dataclasses.is_dataclass(remembered)
