"""Policies the schema cannot fully check: every problem is reported with its field."""

import pytest

from image_gate.core import policy as policy_module
from image_gate.core.images import ImageReference
from image_gate.core.policy import PolicyError, compile_policy


def test_a_full_policy_compiles() -> None:
    policy = compile_policy(
        "base-os",
        {
            "mode": "Warn",
            "onUnresolved": "Allow",
            "match": {
                "namespaceSelector": {"matchLabels": {"team": "shop"}},
                "excludeNamespaces": ["sandbox"],
                "images": ["swr.*.myhuaweicloud.com/**"],
                "excludeImages": ["swr.*.myhuaweicloud.com/tools/**"],
            },
            "baseImage": {
                "allowedOS": [
                    {"name": "Debian", "versions": [">=11"]},
                    {"name": "Ubuntu", "versions": ["22.04", 24.04]},
                ],
                "deniedOS": [{"name": "CentOS"}],
            },
        },
        generation=3,
    )
    assert (policy.mode, policy.on_unresolved, policy.generation) == ("Warn", "Allow", 3)
    assert policy.covers_namespace("web", {"team": "shop"})
    assert not policy.covers_namespace("sandbox", {"team": "shop"})
    assert not policy.covers_namespace("web", {"team": "blog"})
    assert policy.covers_image(ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/org/app:1"))
    assert not policy.covers_image(ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/tools/x:1"))
    assert not policy.covers_image(ImageReference.parse("nginx"))
    assert [str(rule) for rule in policy.base_image.allowed_os] == ["Debian >=11", "Ubuntu 22.04 or 24.04"]  # type: ignore[union-attr]
    assert policy.needs_base_image


def test_defaults_enforce_and_deny_on_unresolved() -> None:
    policy = compile_policy("pinned", {"digest": {"requirePinned": True}})
    assert (policy.mode, policy.on_unresolved, policy.images) == ("Enforce", "Deny", ())
    assert policy.covers_image(ImageReference.parse("anything/at:all"))
    assert not policy.needs_base_image


def test_registry_digest_is_needed_only_where_it_can_decide() -> None:
    match = compile_policy("m", {"digest": {"matchRegistry": True}})
    allow = compile_policy("a", {"digest": {"allowed": ["sha256:" + "a" * 64]}})
    pinned = ImageReference.parse("app:1@sha256:" + "b" * 64)
    tagged = ImageReference.parse("app:1")
    digest_only = ImageReference.parse("app@sha256:" + "b" * 64)
    assert (match.needs_registry_digest(pinned), match.needs_registry_digest(tagged)) == (True, False)
    assert match.needs_registry_digest(digest_only) is False
    assert (allow.needs_registry_digest(pinned), allow.needs_registry_digest(tagged)) == (False, True)


@pytest.mark.parametrize(
    ("spec", "problems"),
    [
        ({}, ["spec: a policy needs baseImage or digest rules (or both); this one checks nothing"]),
        ("nope", ["spec: must be a mapping"]),
        (
            {"mode": "Block", "onUnresolved": "Maybe", "digest": {"requirePinned": True}},
            [
                "spec.mode: must be one of Enforce, Warn, Audit, not 'Block'",
                "spec.onUnresolved: must be Deny or Allow, not 'Maybe'",
            ],
        ),
        (
            {"baseImage": {"allowedOS": [{"name": "Debian", "versions": [">=eleven", "12.*"]}]}},
            ["spec.baseImage.allowedOS[0].versions[0]: '>=eleven': >= needs a numeric version, not 'eleven'"],
        ),
        (
            {"baseImage": {"allowedOS": [{"versions": ["1"]}]}},
            [
                "spec.baseImage.allowedOS[0].name: must be a non-empty string",
                "spec.baseImage: give allowedOS, deniedOS or allowedLayerDigests",
            ],
        ),
        (
            {"digest": {"allowed": ["sha256:xyz"], "matchRegistry": "yes"}},
            [
                "spec.digest.matchRegistry: must be true or false, not 'yes'",
                "spec.digest.allowed[0]: 'sha256:xyz' is not a digest (sha256:<64 lowercase hex>)",
                "spec.digest: set requirePinned, matchRegistry or allowed",
            ],
        ),
        (
            {
                "match": {
                    "images": ["ok/**", ""],
                    "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "X"}]},
                },
                "digest": {"requirePinned": True},
                "extra": 1,
            },
            [
                "spec: unknown field(s) extra",
                "spec.match.namespaceSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, "
                "DoesNotExist, not 'X'",
                "spec.match.images[1]: an image pattern must be a non-empty string",
            ],
        ),
    ],
)
def test_problems_name_their_field(spec: object, problems: list[str]) -> None:
    with pytest.raises(PolicyError) as caught:
        compile_policy("broken", spec)
    assert caught.value.problems == problems
    assert str(caught.value).startswith("policy 'broken' is invalid: ")


def test_image_globs_see_canonical_hosts() -> None:
    policy = compile_policy(
        "swr",
        {
            "match": {
                "images": ["SWR.*.MyHuaweiCloud.com/**"],
                "excludeImages": ["swr.*.myhuaweicloud.com:443/tools/**"],
            },
            "digest": {"requirePinned": True},
        },
    )
    assert policy.covers_image(ImageReference.parse("Swr.Cn-North-4.MyHuaweiCloud.com:443/org/app:1"))
    assert not policy.covers_image(ImageReference.parse("SWR.cn-north-4.myhuaweicloud.com/tools/x:1"))
    assert [glob.text for glob in policy.images] == ["SWR.*.MyHuaweiCloud.com/**"]


def test_covers_image_answers_from_memory_and_forgets_past_its_bound() -> None:

    compiled = compile_policy(
        "swr-only",
        {
            "match": {"images": ["swr.*.myhuaweicloud.com/**"], "excludeImages": ["**/legacy-*"]},
            "digest": {"requirePinned": True},
        },
    )
    swr = ImageReference.parse("SWR.cn-north-4.myhuaweicloud.com:443/team/app:1")
    legacy = ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/team/legacy-batch:2")
    hub = ImageReference.parse("nginx:1.27")
    for _ in range(2):  # the second round is answered from the memo, and must agree
        assert compiled.covers_image(swr) is True
        assert compiled.covers_image(legacy) is False
        assert compiled.covers_image(hub) is False
    for n in range(policy_module._COVERED_MAX + 10):  # images nobody runs twice cost no memory past the bound
        compiled.covers_image(ImageReference.parse(f"swr.cn-north-4.myhuaweicloud.com/team/app-{n}:1"))
    assert len(compiled._covered) <= policy_module._COVERED_MAX
    assert compiled.covers_image(swr) is True
