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
        ("Registry.Example.com/app", "registry.example.com/app:latest", "registry.example.com", "app", "latest", None),
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
        ("docker.io/" + "a" * 260, "the repository path is longer than 255 characters"),
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


SWR_IMAGE = "swr.cn-north-4.myhuaweicloud.com/org/app:1"


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("SWR.cn-north-4.myhuaweicloud.com/org/app:1", SWR_IMAGE),
        ("Swr.Cn-North-4.MyHuaweiCloud.com/org/app:1", SWR_IMAGE),
        ("swr.cn-north-4.myhuaweicloud.com:443/org/app:1", SWR_IMAGE),
        ("SWR.CN-NORTH-4.MYHUAWEICLOUD.COM:443/org/app:1", SWR_IMAGE),
        ("swr.cn-north-4.myhuaweicloud.com:5000/org/app:1", "swr.cn-north-4.myhuaweicloud.com:5000/org/app:1"),
        ("example.com:80/app:1", "example.com:80/app:1"),
        ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
        ("registry-1.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
        ("registry.hub.docker.com/bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("Index.Docker.IO:443/nginx", "docker.io/library/nginx:latest"),
        ("LOCALHOST/app", "localhost/app:latest"),
        ("Docker/app", "docker:443/app:latest"),
        ("registry:443/app", "registry:443/app:latest"),
        ("REGISTRY:443/app", "registry:443/app:latest"),
        ("registry:5000/app", "registry:5000/app:latest"),
        ("[FC00::1]:443/app", "[fc00::1]/app:latest"),
    ],
)
def test_registry_hosts_are_canonical(text: str, normalized: str) -> None:
    assert ImageReference.parse(text).normalized == normalized


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a" * 64, "an image ID (64 hex characters) names no registry or repository; use the image's name"),
        (
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "an image ID (64 hex characters) names no registry or repository; use the image's name",
        ),
        (
            "swr.cn-north-4.myhuaweicloud.com./org/app:1",
            "'swr.cn-north-4.myhuaweicloud.com.' is not a valid registry host",
        ),
        (
            "app@invaliddigest:" + "f" * 64,
            "digest algorithm 'invaliddigest' is not one a runtime verifies (sha256, sha384, sha512)",
        ),
        ("app@md5:" + "f" * 32, "digest algorithm 'md5' is not one a runtime verifies (sha256, sha384, sha512)"),
        ("app@sha256:" + "f" * 34, "a sha256 digest has exactly 64 lowercase hex characters"),
        ("app@sha512:" + "f" * 64, "a sha512 digest has exactly 128 lowercase hex characters"),
    ],
)
def test_what_a_runtime_refuses_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidImageReference) as caught:
        ImageReference.parse(text)
    assert caught.value.reason == reason


@pytest.mark.parametrize("text", ["a" * 64 + ":latest", "docker.io/" + "a" * 64, "sha256:" + "a" * 64])
def test_a_hex_name_with_more_than_the_id_is_a_name(text: str) -> None:
    # What ParseNormalizedNamed accepts: only the bare 64-hex string is an ID.
    assert ImageReference.parse(text).registry == "docker.io"


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_digest_algorithms_a_runtime_verifies(algorithm: str) -> None:
    length = {"sha256": 64, "sha384": 96, "sha512": 128}[algorithm]
    digest = f"{algorithm}:" + "0f" * (length // 2)
    assert ImageReference.parse(f"app@{digest}").digest == digest


def test_the_path_limit_is_on_the_path_not_the_host() -> None:
    # distribution/reference's ErrNameTooLong counts the repository path only.
    image = ImageReference.parse("example.com/" + "a" * 255 + ":tag")
    assert len(image.repository) == 255


@pytest.mark.parametrize("registry", ["a" * 254 + ".com", "example.com:123456", "[::1]:123456"])
def test_hosts_and_ports_no_node_could_reach_are_refused(registry: str) -> None:
    with pytest.raises(InvalidImageReference) as caught:
        ImageReference.parse(f"{registry}/app:1")
    assert caught.value.reason == "the registry host or port is longer than DNS and TCP allow"
    assert ImageReference.parse("a" * 249 + ".com:65535/app:1").host == "a" * 249 + ".com"


@pytest.mark.parametrize(
    "text", ["Registry/app", "registry:443/app:1", "SWR.cn-north-4.myhuaweicloud.com:443/o/a", "x.io/a"]
)
def test_the_canonical_reference_reads_back_as_itself(text: str) -> None:
    # A single-label host keeps ":443": "registry/app" would read back as docker.io/registry/app.
    image = ImageReference.parse(text)
    assert ImageReference.parse(image.normalized) == image
