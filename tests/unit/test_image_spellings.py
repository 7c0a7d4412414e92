"""Every spelling of a registry a runtime would pull from is judged like the canonical one.

Host names are case-insensitive, 443 is HTTPS's default port and Docker Hub answers to several names: a pod
that writes the host differently must meet the same policies, the same registry mapping and the same words.

No hypothesis deadline: on a shared machine it would time the machine; test_glob_matching times the matcher.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from image_gate.core.images import ImageReference
from image_gate.core.patterns import ImageGlob
from image_gate.facts.registries import RegistryMapping
from tests.image_strategies import Image, globs, images, spellings

_MAPPING = RegistryMapping.default()
_POLICY_GLOBS = tuple(
    ImageGlob.compile(text)
    for text in (
        "swr.*.myhuaweicloud.com/**",
        "SWR.*.MyHuaweiCloud.com/**",
        "swr.cn-north-4.myhuaweicloud.com:443/**",
        "*.*.cr.aliyuncs.com/**",
        "docker.io/**",
        "index.docker.io/**",
        "**",
        "localhost/**",
    )
)


@settings(deadline=None)
@given(st.data(), images())
def test_a_spelling_is_judged_like_the_canonical_image(data: st.DataObject, image: Image) -> None:
    spelled = data.draw(spellings(image))
    canonical, other = ImageReference.parse(image.text), ImageReference.parse(spelled)
    assert other == canonical
    assert canonical.normalized.startswith(f"{image.host}{image.port}/"), "the strategy draws canonical images"
    assert ImageReference.parse(canonical.normalized) == canonical, "the canonical form reads back as itself"
    assert other.normalized == canonical.normalized
    assert [glob.matches(other) for glob in _POLICY_GLOBS] == [glob.matches(canonical) for glob in _POLICY_GLOBS]
    assert _MAPPING.hss_location(other) == _MAPPING.hss_location(canonical)
    assert _MAPPING.acr_location(other) == _MAPPING.acr_location(canonical)


@settings(deadline=None)
@given(st.data(), images(), globs())
def test_random_globs_see_one_spelling(data: st.DataObject, image: Image, glob: str) -> None:
    spelled = data.draw(spellings(image))
    compiled = ImageGlob.compile(glob)
    assert compiled.matches(ImageReference.parse(spelled)) == compiled.matches(ImageReference.parse(image.text))


def test_the_issue_examples() -> None:
    policy = ImageGlob.compile("swr.*.myhuaweicloud.com/**")
    for text in (
        "SWR.cn-north-4.myhuaweicloud.com/org/centos:7",
        "Swr.Cn-North-4.MyHuaweiCloud.com/org/centos:7",
        "swr.cn-north-4.myhuaweicloud.com:443/org/centos:7",
    ):
        image = ImageReference.parse(text)
        assert policy.matches(image), text
        assert _MAPPING.hss_location(image) is not None, text
    upper_policy = ImageGlob.compile("SWR.*.myhuaweicloud.com/**")
    assert upper_policy.matches(ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/org/centos:7"))
    assert upper_policy.text == "SWR.*.myhuaweicloud.com/**"
    assert upper_policy.canonical == "swr.*.myhuaweicloud.com/**"
