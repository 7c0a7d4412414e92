"""Evaluation: every rule, against found / missing / unresolved facts, in every mode; and its words."""

import json
import typing
from typing import Any

import pytest

from image_gate.core import findings, messages
from image_gate.core.evaluate import Decision, Subject, decide, plan
from image_gate.core.imagefacts import ImageFacts as Facts
from image_gate.core.imagefacts import StaleFact
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, NotApplicable, NotFound, TimedOut
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
UBUNTU = BaseImage("Ubuntu", "22.04", A)
CENTOS = BaseImage("CentOS Linux", "7.9.2009", B)
TIMEOUT = TimedOut(cloud="huawei", api="ListRegistryImages", detail="no answer within 3.0s")


def subject(*images: str, namespace: str = "shop", labels: dict[str, str] | None = None) -> Subject:
    containers = tuple(Container("container", f"c{index}", image) for index, image in enumerate(images))
    return Subject("Pod", "web", namespace, labels or {}, containers)


def words(finding: findings.Finding) -> tuple[str, str]:
    """What the finding found and expected, as the messages word them."""
    expected = messages.describe_expected(finding.expected) if finding.expected is not None else ""
    return messages.describe_found(finding.found), expected


def run(spec: dict[str, Any], images: list[str], facts: dict[str, Facts] | None = None) -> Decision:
    policy = compile_policy("p", spec)
    the_plan = plan(subject(*images), [policy])
    known = {ImageReference.parse(text): value for text, value in (facts or {}).items()}
    return decide(the_plan, known)


OS_POLICY = {
    "baseImage": {"allowedOS": [{"name": "ubuntu", "versions": [">=22.04"]}], "deniedOS": [{"name": "centos"}]}
}


def test_allowed_os_passes() -> None:
    decision = run(OS_POLICY, ["app:1"], {"app:1": Facts(base_image=Found(UBUNTU))})
    assert decision.allowed
    assert decision.findings == ()
    assert decision.policies == ("p",)


def test_denied_os_is_a_violation_with_found_and_expected() -> None:
    decision = run(OS_POLICY, ["app:1"], {"app:1": Facts(base_image=Found(CENTOS))})
    assert not decision.allowed
    centos = findings.OperatingSystem("CentOS Linux", "7.9.2009")
    policy = compile_policy("p", OS_POLICY)
    assert policy.base_image is not None
    assert [(f.rule, f.problem, f.found, f.expected) for f in decision.denials] == [
        ("baseImage.allowedOS", "violation", centos, findings.AllowedOS(policy.base_image.allowed_os)),
        ("baseImage.deniedOS", "violation", centos, findings.NotOS(policy.base_image.denied_os[0])),
    ]
    assert [words(f) for f in decision.denials] == [
        ("CentOS Linux 7.9.2009", "ubuntu >=22.04"),
        ("CentOS Linux 7.9.2009", "not centos"),
    ]
    assert messages.deny_message("Pod", subject("app:1").display_name, decision.denials) == (
        "image-gate denied Pod web: 2 violations\n"
        '- container "c0" (image app:1): policy "p" rule baseImage.allowedOS: '
        "found CentOS Linux 7.9.2009, expected ubuntu >=22.04\n"
        '- container "c0" (image app:1): policy "p" rule baseImage.deniedOS: '
        "found CentOS Linux 7.9.2009, expected not centos"
    )


@pytest.mark.parametrize(
    ("outcome", "found"),
    [
        (NotFound(detail="HSS has no base image information for app:1"), "HSS has no base image information for app:1"),
        (
            NotApplicable(detail="no registry mapping sends docker.io to Huawei HSS"),
            "no registry mapping sends docker.io to Huawei HSS",
        ),
        (TIMEOUT, "huawei ListRegistryImages: timed out: no answer within 3.0s"),
        (None, "the base image was not looked up"),
    ],
)
@pytest.mark.parametrize(
    ("mode", "on_unresolved", "allowed", "warned"),
    [
        ("Enforce", "Deny", False, False),
        ("Enforce", "Allow", True, True),
        ("Warn", "Deny", True, True),
        ("Audit", "Deny", True, False),
    ],
)
def test_unresolved_base_image_follows_mode_and_on_unresolved(
    outcome: NotFound | NotApplicable | TimedOut | None,
    found: str,
    mode: str,
    on_unresolved: str,
    allowed: bool,
    warned: bool,
) -> None:
    spec = {**OS_POLICY, "mode": mode, "onUnresolved": on_unresolved}
    decision = run(spec, ["app:1"], {"app:1": Facts(base_image=outcome)})
    assert decision.allowed is allowed
    [finding] = decision.findings
    assert (finding.rule, finding.problem, finding.found, finding.expected) == (
        "baseImage",
        "unresolved",
        findings.Unresolved("base image", outcome),
        None,
    )
    assert words(finding) == (found, "")
    assert bool(decision.warnings) is warned
    assert bool(decision.audits) is (mode == "Audit")


def test_warn_mode_admits_with_word_for_word_warnings() -> None:
    decision = run({**OS_POLICY, "mode": "Warn"}, ["app:1"], {"app:1": Facts(base_image=Found(CENTOS))})
    assert decision.allowed
    assert messages.warning_messages(decision.warnings) == [
        'image-gate (policy "p" in Warn mode): container "c0" (image app:1): policy "p" rule baseImage.allowedOS: '
        "found CentOS Linux 7.9.2009, expected ubuntu >=22.04",
        'image-gate (policy "p" in Warn mode): container "c0" (image app:1): policy "p" rule baseImage.deniedOS: '
        "found CentOS Linux 7.9.2009, expected not centos",
    ]


def test_on_unresolved_allow_warns_in_enforce_mode() -> None:
    decision = run({**OS_POLICY, "onUnresolved": "Allow"}, ["app:1"], {"app:1": Facts(base_image=TIMEOUT)})
    assert decision.allowed
    assert messages.warning_messages(decision.warnings) == [
        'image-gate (policy "p" allowed it: onUnresolved=Allow): container "c0" (image app:1): policy "p" rule '
        "baseImage could not be checked (lookup failure, onUnresolved=Allow): "
        "huawei ListRegistryImages: timed out: no answer within 3.0s"
    ]


def test_allowed_layer_digests() -> None:
    spec = {"baseImage": {"allowedLayerDigests": [A]}}
    assert run(spec, ["app:1"], {"app:1": Facts(base_image=Found(UBUNTU))}).allowed
    [finding] = run(spec, ["app:1"], {"app:1": Facts(base_image=Found(CENTOS))}).denials
    assert (finding.found, finding.expected) == (
        findings.BaseLayer(B, findings.OperatingSystem("CentOS Linux", "7.9.2009")),
        findings.ApprovedLayers(frozenset({A})),
    )
    assert words(finding) == (f"base layer {B} (CentOS Linux 7.9.2009)", "one of 1 approved base layers")


def test_require_pinned() -> None:
    spec = {"digest": {"requirePinned": True}}
    assert run(spec, [f"app:1@{A}"]).allowed
    [finding] = run(spec, ["app:1"]).denials
    assert finding.rule == "digest.requirePinned"
    assert (finding.found, finding.expected) == (findings.Tag("1"), findings.PinnedReference())
    assert words(finding) == ("tag 1", "a reference by digest (@sha256:...)")


def test_match_registry_compares_pinned_with_the_registry() -> None:
    spec = {"digest": {"matchRegistry": True}}
    pinned = f"app:1@{A}"
    assert run(spec, [pinned], {pinned: Facts(registry_digest=Found(A))}).allowed
    [finding] = run(spec, [pinned], {pinned: Facts(registry_digest=Found(B))}).denials
    assert (finding.found, finding.expected) == (findings.PinnedDigest(A), findings.RegistryDigest(B, "1"))
    assert words(finding) == (f"pinned {A}", f"{B}, the registry's digest for tag 1")
    [unresolved] = run(spec, [pinned], {pinned: Facts(registry_digest=NotFound(detail="gone"))}).denials
    assert (unresolved.rule, unresolved.problem, unresolved.found) == (
        "digest.matchRegistry",
        "unresolved",
        findings.Unresolved("registry digest", NotFound(detail="gone")),
    )
    assert words(unresolved) == ("gone", "")
    assert run(spec, ["app:1"]).allowed, "an unpinned tag has nothing to compare"
    assert run(spec, [f"app@{A}"]).allowed, "a digest without a tag has nothing to compare"


def test_allowed_digests_use_the_pinned_or_the_registry_digest() -> None:
    spec = {"digest": {"allowed": [A]}}
    assert run(spec, [f"app@{A}"]).allowed
    assert not run(spec, [f"app@{B}"]).allowed
    assert run(spec, ["app:1"], {"app:1": Facts(registry_digest=Found(A))}).allowed
    [finding] = run(spec, ["app:1"], {"app:1": Facts(registry_digest=Found(B))}).denials
    assert finding.found == findings.Digest(B, "registry")
    assert finding.expected == findings.AllowedDigests(frozenset({A}))
    assert words(finding) == (B, "one of 1 allowed digests")
    [pinned] = run(spec, [f"app@{B}"]).denials
    assert (pinned.found, words(pinned)) == (findings.Digest(B, "pinned"), (B, "one of 1 allowed digests"))
    [unresolved] = run(spec, ["app:1"], {"app:1": Facts(registry_digest=TIMEOUT)}).denials
    assert unresolved.problem == "unresolved"
    assert unresolved.found == findings.Unresolved("registry digest", TIMEOUT)


def test_invalid_image_is_denied_by_every_policy_covering_the_namespace() -> None:
    decision = run({"digest": {"requirePinned": True}, "match": {"images": ["quay.io/**"]}}, ["Bad Image"])
    [finding] = decision.denials
    assert (finding.rule, finding.found, finding.expected) == (
        "image",
        findings.InvalidReference("the image contains whitespace"),
        findings.ValidReference(),
    )
    assert words(finding) == ("the image contains whitespace", "a valid image reference")


def test_all_matching_policies_must_pass_and_only_needed_facts_are_planned() -> None:
    os_policy = compile_policy("os", {**OS_POLICY, "match": {"images": ["swr.*.myhuaweicloud.com/**"]}})
    pin_policy = compile_policy("pin", {"digest": {"matchRegistry": True}, "match": {"excludeNamespaces": ["shop"]}})
    acr = compile_policy("acr", {"digest": {"allowed": [A]}, "match": {"images": ["*.cr.aliyuncs.com/**"]}})
    swr = "swr.cn-north-4.myhuaweicloud.com/org/app:1"
    ali = "x-registry.cn-hangzhou.cr.aliyuncs.com/ns/web:2"
    the_plan = plan(subject(swr, ali, "nginx"), [os_policy, pin_policy, acr])
    assert {str(image): (n.base_image, n.registry_digest) for image, n in the_plan.needs.items()} == {
        swr: (True, False),
        "x-registry.cn-hangzhou.cr.aliyuncs.com/ns/web:2": (False, True),
    }
    assert the_plan.policy_names == ("acr", "os")
    facts = {
        ImageReference.parse(swr): Facts(base_image=Found(UBUNTU)),
        ImageReference.parse(ali): Facts(registry_digest=Found(B)),
    }
    decision = decide(the_plan, facts)
    assert not decision.allowed
    assert [(f.policy, f.container.name) for f in decision.denials] == [("acr", "c1")]


def test_namespace_selector_decides_coverage() -> None:
    policy = compile_policy("p", {**OS_POLICY, "match": {"namespaceSelector": {"matchLabels": {"gate": "on"}}}})
    assert plan(subject("app:1", labels={"gate": "on"}), [policy]).policy_names == ("p",)
    assert plan(subject("app:1", labels={}), [policy]).policy_names == ()


def test_deny_message_counts_and_lists_lookup_failures_after_violations() -> None:
    spec = {**OS_POLICY}
    decision = run(
        spec, ["app:1", "app:2"], {"app:1": Facts(base_image=TIMEOUT), "app:2": Facts(base_image=Found(CENTOS))}
    )
    message = messages.deny_message("Pod", "web", decision.denials)
    assert message.splitlines()[0] == "image-gate denied Pod web: 2 violations and 1 lookup failure"
    assert message.splitlines()[-1] == (
        '- container "c0" (image app:1): policy "p" rule baseImage could not be checked '
        "(lookup failure, onUnresolved=Deny): huawei ListRegistryImages: timed out: no answer within 3.0s"
    )


def test_findings_carry_values_not_sentences() -> None:
    spec = {
        "baseImage": {"allowedOS": [{"name": "ubuntu", "versions": [">=22.04"]}], "allowedLayerDigests": [A]},
        "digest": {"requirePinned": True, "allowed": [A]},
    }
    decision = run(spec, ["app:1", "Bad Image"], {"app:1": Facts(base_image=Found(CENTOS), registry_digest=TIMEOUT)})
    data = [f.as_dict() for f in decision.findings]
    assert json.loads(json.dumps(data)) == data, "plain JSON"
    assert [(d["rule"], d["problem"], d["found"], d["expected"]) for d in data] == [
        (
            "baseImage.allowedOS",
            "violation",
            {"type": "os", "name": "CentOS Linux", "version": "7.9.2009"},
            {"type": "allowed_os", "os": [{"name": "ubuntu", "versions": [">=22.04"]}]},
        ),
        (
            "baseImage.allowedLayerDigests",
            "violation",
            {"type": "base_layer", "digest": B, "os_name": "CentOS Linux", "os_version": "7.9.2009"},
            {"type": "approved_layers", "digests": [A]},
        ),
        ("digest.requirePinned", "violation", {"type": "tag", "tag": "1"}, {"type": "pinned_reference"}),
        (
            "digest.allowed",
            "unresolved",
            {
                "type": "unresolved",
                "fact": "registry digest",
                "outcome": "timed out",
                "cloud": "huawei",
                "api": "ListRegistryImages",
                "detail": "no answer within 3.0s",
                "code": None,
                "request_id": None,
            },
            None,
        ),
        (
            "image",
            "violation",
            {"type": "invalid_reference", "reason": "the image contains whitespace"},
            {"type": "valid_reference"},
        ),
    ]
    assert (data[0]["container"], data[0]["image"], data[0]["denies"]) == ("c0", "app:1", True)


def test_unresolved_findings_say_what_took_the_facts_place() -> None:
    policy = {"baseImage": {"allowedOS": [{"name": "ubuntu"}]}}
    for outcome, data in [
        (None, {"outcome": "not looked up"}),
        (NotFound(detail="not scanned"), {"outcome": "not found", "detail": "not scanned"}),
        (NotApplicable(detail="no mapping"), {"outcome": "not applicable", "detail": "no mapping"}),
    ]:
        [finding] = run(policy, ["app:1"], {"app:1": Facts(base_image=outcome)}).findings
        assert finding.as_dict()["found"] == {"type": "unresolved", "fact": "base image", **data}


def test_matching_the_registry_carries_both_digests() -> None:
    pinned = f"app:1@{A}"
    [finding] = run({"digest": {"matchRegistry": True}}, [pinned], {pinned: Facts(registry_digest=Found(B))}).findings
    assert (finding.as_dict()["found"], finding.as_dict()["expected"]) == (
        {"type": "pinned_digest", "digest": A},
        {"type": "registry_digest", "digest": B, "tag": "1"},
    )


@pytest.mark.parametrize(
    ("fact", "age", "words"),
    [
        ("base image", 42 * 60 + 10, "from HSS 42 min old (its base image)"),
        ("registry digest", 45, "from SAS 45 s old (its registry digest)"),
        ("base image", 5400, "from HSS 1.5 h old (its base image)"),
    ],
)
def test_the_stale_warning_names_the_image_the_source_its_age_and_why(fact: Any, age: float, words: str) -> None:
    image = ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/shop/api:1")
    outage = TimedOut(cloud="huawei", api="ListRegistryImages", detail="no answer", request_id="r-9")
    assert messages.stale_warning(image, StaleFact(fact, age, (outage,))) == (
        f"image-gate judged image swr.cn-north-4.myhuaweicloud.com/shop/api:1 on facts {words}: "
        "huawei ListRegistryImages: timed out: no answer (request id r-9)"
    )


def test_messages_word_every_kind_of_value() -> None:
    assert set(typing.get_args(findings.FoundValue)) == set(messages._FOUND_WORDS)
    assert set(typing.get_args(findings.ExpectedValue)) == set(messages._EXPECTED_WORDS)
