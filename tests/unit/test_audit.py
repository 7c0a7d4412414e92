"""The audit: every result kind, word for word as the webhook; which objects are audited; its memo."""

from collections.abc import Mapping
from typing import Any

import pytest

from image_gate.core import messages
from image_gate.core.audit import AuditedObject, AuditPass, AuditResult, audit, audited_object, policy_rules
from image_gate.core.evaluate import Subject, decide, plan
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, NotFound, TimedOut
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container

SWR = "swr.cn-north-4.myhuaweicloud.com"
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
DEBIAN = BaseImage("Debian GNU/Linux", "12", A)
CENTOS = BaseImage("CentOS Linux", "7.9.2009", B)
SWR_ONLY: dict[str, Any] = {"images": [f"{SWR}/**"]}
BASE_OS: dict[str, Any] = {
    "match": SWR_ONLY,
    "baseImage": {"allowedOS": [{"name": "Debian", "versions": [">=11"]}], "deniedOS": [{"name": "CentOS"}]},
}
PINNED: dict[str, Any] = {"mode": "Warn", "match": SWR_ONLY, "digest": {"requirePinned": True}}
MATCH_REGISTRY = {"digest": {"matchRegistry": True}}


class StoredFacts:
    """A fact store's index as the audit sees it: what it holds, by image; None for what it does not."""

    def __init__(self, facts: Mapping[str, ImageFacts]) -> None:
        self.facts = {ImageReference.parse(image): known for image, known in facts.items()}
        self.asked: list[tuple[ImageReference, bool, bool]] = []

    def known(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        self.asked.append((image, base_image, digest))
        known = self.facts.get(image)
        if known is None or (base_image and known.base_image is None) or (digest and known.registry_digest is None):
            return None  # as SharedFacts.known: None when any fact asked for is not stored
        return known


def pod(*images: str, name: str = "web", namespace: str = "shop", uid: str = "u-1") -> AuditedObject:
    containers = tuple(Container("container", f"c{n}", image) for n, image in enumerate(images))
    return AuditedObject("Pod", namespace, name, uid, containers)


def run(
    objects: list[AuditedObject],
    specs: Mapping[str, Mapping[str, Any]],
    facts: Mapping[str, ImageFacts] | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> AuditPass:
    policies = [compile_policy(name, spec) for name, spec in specs.items()]
    return audit(objects, policies, lambda ns: (labels or {}).get(ns, {}), StoredFacts(facts or {}))


def outcomes(result: AuditPass) -> list[tuple[str, str, str, str]]:
    return [(r.container, r.policy, r.rule, r.result) for r in result.results]


def denial_lines(
    image: str, spec: Mapping[str, Any], facts: Mapping[str, ImageFacts], *, policy_name: str = "base-os"
) -> list[str]:
    """The lines the webhook's denial gives for a pod of container ``c0`` running ``image``."""
    policy = compile_policy(policy_name, spec)
    the_plan = plan(Subject("Pod", "shop/web", "shop", {}, (Container("container", "c0", image),)), [policy])
    decision = decide(the_plan, {ImageReference.parse(i): f for i, f in facts.items()})
    return messages.deny_message("Pod", "shop/web", decision.denials).split("\n- ")[1:]


def test_a_container_meeting_every_rule_passes_each_rule() -> None:
    image = f"{SWR}/shop/app:1"
    result = run([pod(image)], {"base-os": BASE_OS}, {image: ImageFacts(base_image=Found(DEBIAN))})
    assert result.results == (
        AuditResult(
            "shop", "Pod", "web", "u-1", "c0", image, "base-os", "baseImage.allowedOS", "pass",
            f'container "c0" (image {image}): policy "base-os" rule baseImage.allowedOS passed', "", "", None,
        ),
        AuditResult(
            "shop", "Pod", "web", "u-1", "c0", image, "base-os", "baseImage.deniedOS", "pass",
            f'container "c0" (image {image}): policy "base-os" rule baseImage.deniedOS passed', "", "", None,
        ),
    )  # fmt: skip
    assert result.missing == frozenset()
    assert result.policies == ("base-os",)


@pytest.mark.parametrize("mode", ["Enforce", "Audit"])
def test_a_violation_fails_in_the_words_of_the_denial(mode: str) -> None:
    image = f"{SWR}/shop/app:1"
    facts = {image: ImageFacts(base_image=Found(CENTOS))}
    result = run([pod(image)], {"base-os": {**BASE_OS, "mode": mode}}, facts)
    assert outcomes(result) == [
        ("c0", "base-os", "baseImage.allowedOS", "fail"),
        ("c0", "base-os", "baseImage.deniedOS", "fail"),
    ]
    assert [r.message for r in result.results] == denial_lines(image, BASE_OS, facts)
    assert [(r.found, r.expected) for r in result.results] == [
        ("CentOS Linux 7.9.2009", "Debian >=11"),
        ("CentOS Linux 7.9.2009", "not CentOS"),
    ]


def test_a_warn_policy_warns_and_only_where_its_namespace_selector_covers() -> None:
    image = f"{SWR}/shop/app:1"
    spec = {**PINNED, "match": {**SWR_ONLY, "namespaceSelector": {"matchLabels": {"pin": "warn"}}}}
    result = run(
        [pod(image, namespace="opted-in"), pod(image, namespace="other")],
        {"pinned": spec},
        labels={"opted-in": {"pin": "warn"}},
    )
    [warned] = result.results
    assert (warned.namespace, warned.rule, warned.result) == ("opted-in", "digest.requirePinned", "warn")
    assert warned.message == (
        f'container "c0" (image {image}): policy "pinned" rule digest.requirePinned: '
        "found tag 1, expected a reference by digest (@sha256:...)"
    )
    assert (warned.found, warned.expected) == ("tag 1", "a reference by digest (@sha256:...)")


def test_a_fact_not_stored_is_an_error_that_names_it_and_is_listed_for_the_resolver() -> None:
    image = f"{SWR}/shop/app:1"
    result = run([pod(image)], {"base-os": BASE_OS, "pinned": PINNED})
    assert outcomes(result) == [
        ("c0", "base-os", "baseImage", "error"),  # one error for the fact, not one per baseImage rule
        ("c0", "pinned", "digest.requirePinned", "warn"),  # needs no fact: judged all the same
    ]
    error = result.results[0]
    assert error.message == (
        f'container "c0" (image {image}): policy "base-os" rule baseImage could not be checked yet: '
        "image-gate has no stored base image of this image; the resolver was asked to look it up"
    )
    assert (error.found, error.expected) == ("no stored base image", "")
    assert result.missing == {(ImageReference.parse(image), True, False)}


def test_with_one_of_two_facts_stored_the_rules_of_the_stored_one_are_judged() -> None:
    image = f"{SWR}/shop/app:1"
    spec = {**BASE_OS, "digest": {"allowed": [A]}}
    facts = StoredFacts({image: ImageFacts(base_image=Found(CENTOS))})
    result = audit([pod(image)], [compile_policy("p", spec)], lambda ns: {}, facts)
    assert outcomes(result) == [
        ("c0", "p", "baseImage.allowedOS", "fail"),
        ("c0", "p", "baseImage.deniedOS", "fail"),
        ("c0", "p", "digest.allowed", "error"),
    ]
    assert "no stored registry digest of this image" in result.results[2].message
    assert result.missing == {(ImageReference.parse(image), False, True)}  # only what is missing


def test_a_stored_lookup_failure_is_an_error_in_the_words_of_the_denial() -> None:
    image = f"{SWR}/shop/app:1"
    facts = {image: ImageFacts(base_image=NotFound(detail="HSS has not scanned this image yet"))}
    result = run([pod(image)], {"base-os": BASE_OS}, facts)
    [error] = result.results
    assert (error.rule, error.result, error.found) == ("baseImage", "error", "HSS has not scanned this image yet")
    assert [error.message] == denial_lines(image, BASE_OS, facts)
    assert result.missing == frozenset()  # stored: the store's upkeep retries it, not the audit


def test_onUnresolved_allow_does_not_turn_an_unresolved_fact_into_a_pass() -> None:
    image = f"{SWR}/shop/app:1"
    timeout = TimedOut(cloud="huawei", api="ListImageBasicImage", detail="no answer within 3.0s")
    result = run([pod(image)], {"p": {**BASE_OS, "onUnresolved": "Allow"}}, {image: ImageFacts(base_image=timeout)})
    assert outcomes(result) == [("c0", "p", "baseImage", "error")]


def test_match_registry_skips_references_it_cannot_compare_and_judges_the_rest() -> None:
    acr = "shop-registry.cn-hangzhou.cr.aliyuncs.com/shop/app"
    tagged, pinned, digest_only = f"{acr}:1", f"{acr}:1@{A}", f"{acr}@{A}"
    facts = {pinned: ImageFacts(registry_digest=Found(B))}
    result = run([pod(tagged, pinned, digest_only)], {"acr": MATCH_REGISTRY}, facts)
    assert outcomes(result) == [
        ("c0", "acr", "digest.matchRegistry", "skip"),
        ("c1", "acr", "digest.matchRegistry", "fail"),
        ("c2", "acr", "digest.matchRegistry", "skip"),
    ]
    assert result.results[0].message == (
        f'container "c0" (image {tagged}): policy "acr" rule digest.matchRegistry does not apply: '
        "the reference pins no digest to compare with the registry's"
    )
    assert "names no tag" in result.results[2].message
    assert result.results[1].found == f"pinned {A}"
    assert result.missing == frozenset()  # neither skipped reference needs the registry's digest


def test_an_invalid_reference_is_one_result_per_policy_covering_the_namespace() -> None:
    result = run([pod("Not A Reference")], {"base-os": BASE_OS, "pinned": PINNED})
    assert outcomes(result) == [("c0", "base-os", "image", "fail"), ("c0", "pinned", "image", "warn")]
    assert result.results[0].expected == "a valid image reference"


def test_no_result_where_a_policy_covers_neither_the_image_nor_the_namespace() -> None:
    asked: list[str] = []

    def labels(namespace: str) -> Mapping[str, str]:
        asked.append(namespace)
        return {}

    spec = {**BASE_OS, "match": {**SWR_ONLY, "excludeNamespaces": ["kube-system"]}}
    objects = [
        pod("nginx:1.27"),
        pod(f"{SWR}/a:1", namespace="kube-system"),
        pod(f"{SWR}/a:1", namespace="kube-system"),
    ]
    result = audit(objects, [compile_policy("base-os", spec)], labels, StoredFacts({}))
    assert result.results == ()
    assert asked == ["shop", "kube-system"]  # once per namespace


def test_several_findings_of_one_rule_make_one_result_with_every_line() -> None:
    image = f"{SWR}/shop/app:1"
    spec = {"baseImage": {"deniedOS": [{"name": "CentOS"}, {"name": "CentOS", "versions": ["7.x"]}]}}
    facts = {image: ImageFacts(base_image=Found(CENTOS))}
    [result] = run([pod(image)], {"p": spec}, facts).results
    assert result.result == "fail"
    assert result.message.split("\n") == denial_lines(image, spec, facts, policy_name="p")


def test_severity_comes_from_the_policy() -> None:
    image = f"{SWR}/shop/app:1"
    result = run([pod(image)], {"p": {**PINNED, "severity": "high"}, "q": PINNED})
    assert [(r.policy, r.severity) for r in result.results] == [("p", "high"), ("q", None)]


def test_shared_containers_are_judged_once_but_reported_per_object() -> None:
    debian, centos = f"{SWR}/shop/app:1", f"{SWR}/shop/old:1"
    facts = StoredFacts({debian: ImageFacts(base_image=Found(DEBIAN)), centos: ImageFacts(base_image=Found(CENTOS))})
    objects = [pod(debian, centos, name=f"web-{n}", uid=f"u-{n}", namespace=f"ns{n % 3}") for n in range(30)]
    result = audit(objects, [compile_policy("base-os", BASE_OS)], lambda ns: {}, facts)
    assert len(facts.asked) == 2  # one look-up per image, for 30 pods in 3 namespaces
    assert len(result.results) == 30 * 2 * 2
    assert {(r.namespace, r.name, r.uid) for r in result.results} == {
        (f"ns{n % 3}", f"web-{n}", f"u-{n}") for n in range(30)
    }
    assert [r.result for r in result.results if r.name == "web-7"] == ["pass", "pass", "fail", "fail"]


def test_the_memo_keeps_namespaces_covered_by_different_policies_apart() -> None:
    image = f"{SWR}/shop/app:1"
    spec = {**PINNED, "match": {"namespaceSelector": {"matchLabels": {"pin": "warn"}}}}
    objects = [pod(image, namespace=ns) for ns in ("a", "b", "a", "b")]
    result = run(objects, {"pinned": spec, "base-os": BASE_OS}, labels={"b": {"pin": "warn"}})
    by_namespace = {(r.namespace, r.policy) for r in result.results}
    assert by_namespace == {("a", "base-os"), ("b", "base-os"), ("b", "pinned")}


def test_policy_rules_lists_the_rules_a_policy_sets() -> None:
    spec = {
        "baseImage": {"allowedLayerDigests": [A]},
        "digest": {"requirePinned": True, "allowed": [B], "matchRegistry": True},
    }
    assert policy_rules(compile_policy("p", spec)) == (
        "baseImage.allowedLayerDigests",
        "digest.requirePinned",
        "digest.allowed",
        "digest.matchRegistry",
    )


# -------------------------------------------------------------- which objects are audited


def body(kind: str, *, owners: list[Any] | None = None, **meta: Any) -> dict[str, Any]:
    spec = {"initContainers": [{"name": "init", "image": "busybox"}], "containers": [{"name": "app", "image": "app:1"}]}
    metadata = {"name": "x", "namespace": "shop", "uid": "u", **meta}
    if owners is not None:
        metadata["ownerReferences"] = owners
    templates = {
        "Pod": spec,
        "CronJob": {"jobTemplate": {"spec": {"template": {"spec": spec}}}},
    }
    return {"metadata": metadata, "spec": templates.get(kind, {"template": {"spec": spec}})}


def controller(kind: str, *, controls: bool = True) -> list[Any]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": "owner", "uid": "o", "controller": controls}]


@pytest.mark.parametrize(
    ("kind", "owners"),
    [
        ("ReplicaSet", controller("Deployment")),
        ("Job", controller("CronJob")),
    ],
)
def test_what_its_owner_templates_is_audited_through_the_owner(kind: str, owners: list[Any]) -> None:
    assert audited_object(kind, body(kind, owners=owners)) is None


@pytest.mark.parametrize(
    ("kind", "owners"),
    [
        ("Pod", controller("ReplicaSet")),  # every pod: it may run what its template no longer says
        ("Pod", controller("Job")),
        ("ReplicaSet", None),
        ("ReplicaSet", controller("Deployment", controls=False)),  # an owner that is not the controller
        ("ReplicaSet", controller("Rollout")),
        ("Job", controller("Workflow")),
        ("Deployment", None),
        ("StatefulSet", None),
        ("DaemonSet", None),
        ("CronJob", None),
    ],
)
def test_everything_else_is_audited_with_every_container(kind: str, owners: list[Any] | None) -> None:
    obj = audited_object(kind, body(kind, owners=owners))
    assert obj == AuditedObject(
        kind, "shop", "x", "u", (Container("initContainer", "init", "busybox"), Container("container", "app", "app:1"))
    )


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_pod_that_terminated_for_good_is_not_audited(phase: str) -> None:
    assert audited_object("Pod", {**body("Pod"), "status": {"phase": phase}}) is None


@pytest.mark.parametrize("status", [{"phase": "Running"}, {"phase": "Pending"}, {}, None, "garbage"])
def test_a_pod_that_may_still_run_is_audited(status: Any) -> None:
    assert audited_object("Pod", {**body("Pod"), "status": status}) is not None


def test_only_pods_have_a_phase_that_counts() -> None:
    assert audited_object("Job", {**body("Job"), "status": {"phase": "Succeeded"}}) is not None


@pytest.mark.parametrize(
    ("kind", "garbage"),
    [
        ("Pod", "not a mapping"),
        ("Pod", {}),
        ("Pod", {"metadata": "x", "spec": {}}),
        ("Pod", {"metadata": {"namespace": "shop"}, "spec": {"containers": []}}),  # no name
        ("Pod", {"metadata": {"name": "x"}, "spec": {"containers": []}}),  # no namespace
        ("Pod", {"metadata": {"name": "x", "namespace": "shop", "uid": 7}, "spec": {}}),
        ("Pod", {"metadata": {"name": "x", "namespace": "shop"}}),  # no spec
        ("Pod", {"metadata": {"name": "x", "namespace": "shop"}, "spec": {"containers": "app"}}),
        ("Pod", {"metadata": {"name": "x", "namespace": "shop"}, "spec": {"containers": [7]}}),
        ("Deployment", {"metadata": {"name": "x", "namespace": "shop"}, "spec": {"template": None}}),
        ("Service", body("Deployment")),
    ],
)
def test_an_unreadable_object_is_none_not_an_exception(kind: str, garbage: Any) -> None:
    assert audited_object(kind, garbage) is None


@pytest.mark.parametrize(
    "owners", [3, [3, None, {"kind": "Deployment"}], [{"kind": "Deployment", "controller": "yes"}]]
)
def test_unreadable_owner_references_name_no_controller(owners: Any) -> None:
    obj = audited_object("ReplicaSet", body("ReplicaSet", owners=owners))
    assert obj is not None
    assert obj.name == "x"


def test_an_image_is_looked_up_once_whatever_the_containers_running_it_are_called() -> None:
    image = f"{SWR}/shop/app:1"
    facts = StoredFacts({})
    objects = [AuditedObject("Pod", "shop", f"p{n}", "", (Container("container", f"c{n}", image),)) for n in range(5)]
    result = audit(objects, [compile_policy("base-os", BASE_OS)], lambda ns: {}, facts)
    assert facts.asked == [(ImageReference.parse(image), True, False)]
    assert [r.result for r in result.results] == ["error"] * 5
