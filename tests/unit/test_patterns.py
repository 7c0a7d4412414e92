import pytest

from image_gate.core.images import ImageReference
from image_gate.core.patterns import ImageGlob, InvalidPattern, LabelSelector


@pytest.mark.parametrize(
    ("glob", "image", "matches"),
    [
        ("swr.*.myhuaweicloud.com/**", "swr.cn-north-4.myhuaweicloud.com/org/app:1", True),
        ("swr.*.myhuaweicloud.com/**", "docker.io/library/nginx:1", False),
        ("*.cr.aliyuncs.com/**", "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0", True),
        ("docker.io/library/nginx", "nginx:1.27", True),
        ("docker.io/library/nginx:1.*", "nginx:1.27", True),
        ("docker.io/library/nginx:1.*", "nginx:2.0", False),
        ("docker.io/*/nginx", "nginx", True),
        ("docker.io/*", "nginx", False),
        ("docker.io/**", "nginx", True),
        ("**", "quay.io/a/b/c:d", True),
        ("quay.io/?/b:*", "quay.io/a/b:1", True),
        ("docker.io/library/nginx@sha256:*", "nginx@sha256:" + "a" * 64, True),
        # Hosts are canonical (case, Docker Hub's aliases, the default port); the rest is exact.
        ("SWR.*.myhuaweicloud.com/**", "swr.cn-north-4.myhuaweicloud.com/org/app:1", True),
        ("swr.cn-north-4.myhuaweicloud.com:443/org/*", "swr.cn-north-4.myhuaweicloud.com/org/app:1", True),
        ("Index.Docker.IO/library/nginx", "nginx:1.27", True),
        ("registry.example.com:5000/**", "registry.example.com/app", False),
        ("docker.io/library/nginx:1.27-Alpine", "nginx:1.27-alpine", False),
        ("docker.io/library/nginx:1.27-Alpine", "nginx:1.27-Alpine", True),
        ("***", "quay.io/a/b:c", True),
        ("quay.io/***b:c", "quay.io/a/b:c", True),
        ("quay.io/a*/b", "quay.io/ab/b", True),
        ("quay.io/a*b", "quay.io/a/b", False),
        ("quay.io/**/b", "quay.io/b", False),
    ],
)
def test_image_globs(glob: str, image: str, matches: bool) -> None:
    assert ImageGlob.compile(glob).matches(ImageReference.parse(image)) is matches


def test_label_selectors() -> None:
    selector = LabelSelector.compile(
        {
            "matchLabels": {"team": "shop"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.matches({"team": "shop", "env": "prod"})
    assert not selector.matches({"team": "shop", "env": "dev"})
    assert not selector.matches({"team": "shop", "env": "prod", "legacy": "yes"})
    assert LabelSelector.compile(None).matches({})
    assert LabelSelector.compile({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}).matches({})


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Has"}]},
            "ns.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, not 'Has'",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "ns.matchExpressions[0].values: In needs at least one value",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "ns.matchExpressions[0].values: Exists takes no values",
        ),
        ({"matchLabels": ["a"]}, "ns.matchLabels: must be a mapping of label to value"),
    ],
)
def test_bad_selectors_name_the_field(selector: object, message: str) -> None:
    with pytest.raises(InvalidPattern) as caught:
        LabelSelector.compile(selector, where="ns")
    assert str(caught.value) == message
