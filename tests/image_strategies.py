"""Hypothesis strategies for legal image references, their other spellings, and image globs."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

# Built from plain text strategies: st.from_regex is an order of magnitude slower to draw from.
_LOWER_DIGITS = "abcdefghijklmnopqrstuvwxyz0123456789"
_TAG_FIRST = _LOWER_DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_ALNUM = st.text(alphabet=_LOWER_DIGITS, min_size=1, max_size=6)
_SEPARATORS = (".", "_", "__", "-", "--")
_HEX64 = st.integers(0, 2**256 - 1).map(lambda number: f"{number:064x}")


@st.composite
def _label(draw: st.DrawFn) -> str:
    """A DNS label: letters and digits, hyphens inside."""
    middle = draw(st.text(alphabet=_LOWER_DIGITS + "-", max_size=8))
    return draw(_ALNUM) + (f"{middle}{draw(_ALNUM)}" if middle else "")


@st.composite
def _component(draw: st.DrawFn) -> str:
    """A repository path component: alphanumeric runs joined by one separator each."""
    runs = draw(st.lists(_ALNUM, min_size=1, max_size=3))
    text = runs[0]
    for run in runs[1:]:
        text += draw(st.sampled_from(_SEPARATORS)) + run
    return text


def _tag(max_size: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_TAG_FIRST),
        st.text(alphabet=_TAG_FIRST + ".-", max_size=max_size - 1),
    )


KNOWN_HOSTS = (
    "swr.cn-north-4.myhuaweicloud.com",
    "swr.ap-southeast-1.myhuaweicloud.com",
    "shop-registry.cn-hangzhou.cr.aliyuncs.com",
    "crpi-abc123.cn-beijing.personal.cr.aliyuncs.com",
    "registry.cn-shanghai.aliyuncs.com",
    "registry-intl.ap-southeast-1.aliyuncs.com",
    "docker.io",
    "quay.io",
    "localhost",
    "10.0.0.5",
    "[fc00::1]",
    "registry",
)
DOCKER_HUB_SPELLINGS = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


@dataclass(frozen=True)
class Image:
    """A legal image in its canonical spelling, in parts."""

    host: str
    port: str
    rest: str
    """Path, tag and digest: ``org/app:1@sha256:...``."""

    @property
    def text(self) -> str:
        return f"{self.host}{self.port}/{self.rest}"


# Built once: a strategy made inside a draw is validated again on every draw (half the cost of one image).
_RANDOM_HOST = st.lists(_label(), min_size=1, max_size=4).map(lambda labels: ".".join([*labels, "com"]))
_HOSTS = st.one_of(st.sampled_from(KNOWN_HOSTS), _RANDOM_HOST, _label())
_COMPONENTS = st.lists(_component(), min_size=2, max_size=4)
_TAGS = {True: _tag(128), False: _tag(20)}
_PORTS_DOTTED = st.sampled_from(["", "", ":5000", ":8443"])
_PORTS_SINGLE = st.sampled_from([":443", ":5000"])
_LONG_TAIL = st.text(alphabet=_LOWER_DIGITS, min_size=1, max_size=200)


@st.composite
def images(draw: st.DrawFn, *, long: bool = False) -> Image:
    host = draw(_HOSTS)
    # A single-label host is a host only with a port; its canonical form keeps ":443".
    dotted = "." in host or host == "localhost" or host.startswith("[")
    port = draw(_PORTS_DOTTED if dotted else _PORTS_SINGLE)
    components = draw(_COMPONENTS)
    if long:
        # Up to the longest a path may be (255), plus the longest tag and a digest.
        components.append(draw(_LONG_TAIL))
    path = "/".join(components)[:255].rstrip("._-")
    rest = path
    if draw(st.booleans()):
        rest += ":" + draw(_TAGS[long])
    if draw(st.booleans()):
        rest += "@sha256:" + draw(_HEX64)
    return Image(host=host, port=port, rest=rest)


@st.composite
def spellings(draw: st.DrawFn, image: Image) -> str:
    """Another way to write the same image that a runtime would pull from the same registry."""
    host = image.host
    if host == "docker.io" and not image.port:
        host = draw(st.sampled_from(DOCKER_HUB_SPELLINGS))
    upper = draw(st.lists(st.booleans(), min_size=len(host), max_size=len(host)))
    host = "".join(ch.upper() if flip else ch for ch, flip in zip(host, upper, strict=True))
    port = image.port or draw(st.sampled_from(["", ":443"]))
    if port == ":443" and "." not in host and host.lower() != host and draw(st.booleans()):
        port = ""  # "Registry/app": upper case alone makes a single label a host, on port 443
    return f"{host}{port}/{image.rest}"


GLOB_PIECES = ("*", "**", "?", "/", ".", ":", "-", "a", "b", "o", "r", "g", "1", "swr", "cn-north-4", "docker.io")


def globs(*, max_pieces: int = 12) -> st.SearchStrategy[str]:
    """Random image globs made of wildcards and fragments of real names."""
    return st.lists(st.sampled_from(GLOB_PIECES), min_size=1, max_size=max_pieces).map("".join)
