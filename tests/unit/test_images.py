"""Image references as Kubernetes users write them, and as the runtime would read them."""

import pytest

from image_gate.core.images import ImageReference, InvalidImageReference

SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "normalized", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.27", "docker.io/library/nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("library/nginx:1.27", "docker.io/library/nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("docker.io/nginx", "docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None),
        ("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", None),
        (
            "quay.io/prometheus/node-exporter:v1.8.2",
            "quay.io/prometheus/node-exporter:v1.8.2",
            "quay.io",
            "prometheus/node-exporter",
            "v1.8.2",
            None,
        ),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io", "pause", "3.10", None),
        ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000", "app", "latest", None),
        ("localhost/app:dev", "localhost/app:dev", "localhost", "app", "dev", None),
        ("10.0.0.5:5000/team/app:1", "10.0.0.5:5000/team/app:1", "10.0.0.5:5000", "team/app", "1", None),
        ("[::1]:5000/app:1", "[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
        (
            "swr.cn-north-4.myhuaweicloud.com/org/app:v1.2.3",
            "swr.cn-north-4.myhuaweicloud.com/org/app:v1.2.3",
            "swr.cn-north-4.myhuaweicloud.com",
            "org/app",
            "v1.2.3",
            None,
        ),
        (
            "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web/api:2.0",
            "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web/api:2.0",
            "demo-registry.cn-hangzhou.cr.aliyuncs.com",
            "shop/web/api",
            "2.0",
            None,
        ),
        (f"nginx@{SHA}", f"docker.io/library/nginx@{SHA}", "docker.io", "library/nginx", None, SHA),
        (f"nginx:1.27@{SHA}", f"docker.io/library/nginx:1.27@{SHA}", "docker.io", "library/nginx", "1.27", SHA),
        (
            "gcr.io/distroless/static-debian12:nonroot",
            "gcr.io/distroless/static-debian12:nonroot",
            "gcr.io",
            "distroless/static-debian12",
            "nonroot",
            None,
        ),
        (
            "my_org/my__app-x.y:TAG_1.0-rc.1",
            "docker.io/my_org/my__app-x.y:TAG_1.0-rc.1",
            "docker.io",
            "my_org/my__app-x.y",
            "TAG_1.0-rc.1",
            None,
        ),
        ("Registry.Example.com/app", "Registry.Example.com/app:latest", "Registry.Example.com", "app", "latest", None),
    ],
)
def test_references_parse_and_normalise(
    text: str, normalized: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    image = ImageReference.parse(text)
    assert (image.normalized, image.registry, image.repository, image.tag, image.digest) == (
        normalized,
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the image is empty"),
        (" nginx", "the image contains whitespace"),
        ("nginx latest", "the image contains whitespace"),
        ("Nginx", "repository names must be lowercase"),
        ("team/App:1", "repository names must be lowercase"),
        ("nginx:", "'' is not a valid tag"),
        ("nginx:-bad", "'-bad' is not a valid tag"),
        ("nginx:" + "t" * 129, f"'{'t' * 129}' is not a valid tag"),
        ("nginx@sha256:abc", "'sha256:abc' is not a digest (expected sha256:<64 hex>)"),
        ("nginx@sha256:" + "A" * 64, "a sha256 digest has exactly 64 lowercase hex characters"),
        (":1.0", "the image has no name"),
        ("-app/x", "'-app' is not a valid repository path component"),
        ("a//b", "'' is not a valid repository path component"),
        ("example.com/", "'' is not a valid repository path component"),
        ("exa_mple.com/app", "'exa_mple.com' is not a valid registry host"),
        ("docker.io/" + "a" * 260, "the name is longer than 255 characters"),
    ],
)
def test_invalid_references_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidImageReference) as caught:
        ImageReference.parse(text)
    assert caught.value.reason == reason
    assert str(caught.value) == f"invalid image reference {text!r}: {reason}"


def test_namespace_and_short_name_split_at_the_first_segment() -> None:
    image = ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/org/team/app:1")
    assert (image.namespace, image.short_name, image.host) == ("org", "team/app", "swr.cn-north-4.myhuaweicloud.com")
    assert ImageReference.parse("localhost:5000/app").host == "localhost"
