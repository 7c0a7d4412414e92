"""Fuzz target 1: image references.

* Any text, and text shaped like the reference grammar (its pieces in any order, legal images with one
  character changed, long runs of one piece): `ImageReference.parse` returns a reference or raises
  `InvalidImageReference`, nothing else, and spends well under a review's deadline doing so.
* Every spelling of one image a runtime would pull (host case, ``:443``, Docker Hub's other names) gets
  the same verdict and the same findings through `plan` and `decide`, under the example policies and a
  fixed set of facts.

Times are CPU times (`tests.fuzz.timing`): a backtracking regex shows there; a busy neighbour does not.
"""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from image_gate.core.evaluate import Decision, Subject, decide, plan
from image_gate.core.images import ImageReference, InvalidImageReference
from image_gate.core.workloads import Container
from tests.fuzz.cases import count, fuzz
from tests.fuzz.facts import facts_of
from tests.fuzz.policies import EXAMPLE_POLICIES, IN_FORCE_LABELS
from tests.fuzz.timing import cpu_seconds
from tests.image_strategies import Image, images, spellings

PARSE_CPU_BUDGET = 0.05
"""Seconds of CPU one parse may take, even of a 20,000-character string: a review's deadline is 3 s by default."""

_PIECES = (
    "/", "//", ":", "::", "@", ".", "..", "_", "__", "-", "--", "+", "[", "]", "[::1]", "[fc00::1]",
    "a", "A", "z", "0", "9", "latest", "v1.2", "nginx", "library", "org", "localhost", "docker.io",
    "index.docker.io", "Docker.IO", "registry-1.docker.io", "swr.cn-north-4.myhuaweicloud.com", "SWR.",
    "cr.aliyuncs.com", ":443", ":80", ":5000", ":99999", ":0", "@sha256:", "sha256:", "sha512:", "sha384:",
    "md5:", "SHA256:", "a" * 32, "0" * 64, "f" * 64, "F" * 64, "0" * 128, " ", "\t", "\n", "\x00", "é", "ß",
    "İ", "\u212a", "\u0130", "\uff41", "🐳", "%2F", "\\", "?", "*", "#",
)  # fmt: skip
_GRAMMAR_SHAPED = st.lists(st.sampled_from(_PIECES), max_size=24).map("".join)


@st.composite
def _mutated_images(draw: st.DrawFn) -> str:
    """A legal image with one character inserted, deleted or replaced: the near misses a parser gets wrong."""
    text = draw(images()).text
    where = draw(st.integers(0, len(text)))
    character = draw(st.sampled_from([*_PIECES[:20], "A", "\u0131", "\u00e9", " ", "\x7f"]) | st.characters())
    how = draw(st.sampled_from(["insert", "delete", "replace"]))
    if how == "insert":
        return text[:where] + character + text[where:]
    if how == "delete":
        return text[:where] + text[where + 1 :]
    return text[:where] + character + text[where + 1 :]


@st.composite
def _long_runs(draw: st.DrawFn) -> str:
    """One grammar piece repeated up to 20,000 times, around a legal image: what makes a regex backtrack."""
    piece = draw(st.sampled_from(["a", "a-", "a.", "a/", "a_", "-", ".", "/", ":", "@", "[", "a:", "0", "a__"]))
    run = piece * draw(st.integers(1, 20_000))
    image = draw(images()).text
    return draw(st.sampled_from([run, run + image, image + run, f"{image}:{run}", f"{run}@sha256:{'a' * 64}"]))


ANY_TEXT = st.text(max_size=300) | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))


def _parses_or_refuses(text: str) -> None:
    refusal: InvalidImageReference | None = None
    try:
        image = ImageReference.parse(text)
    except InvalidImageReference as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.reason, text
    else:
        assert ImageReference.parse(image.normalized) == image, "the canonical form reads back as itself"
    took = cpu_seconds(lambda: _parse_uncached(text), budget=PARSE_CPU_BUDGET)
    assert took < PARSE_CPU_BUDGET, (len(text), text[:200], f"{took * 1000:.1f} ms")


def _parse_uncached(text: str) -> None:
    """`ImageReference.parse` without its memo, so that every measurement parses."""
    with contextlib.suppress(InvalidImageReference):
        ImageReference._parse_uncached(text)


@fuzz(2500)
@given(ANY_TEXT | _GRAMMAR_SHAPED | _mutated_images())
def test_any_text_parses_or_is_refused(text: str) -> None:
    count("images: any text")
    _parses_or_refuses(text)


@fuzz(300)
@given(_long_runs())
def test_long_runs_parse_or_are_refused_quickly(text: str) -> None:
    count("images: long runs")
    _parses_or_refuses(text)


def _judged(image_text: str) -> Decision:
    subject = Subject(
        kind="Pod",
        display_name="shop/web",
        namespace="shop",
        namespace_labels=IN_FORCE_LABELS,
        containers=(Container(kind="container", name="app", image=image_text),),
    )
    the_plan = plan(subject, EXAMPLE_POLICIES)
    facts = {
        image: facts_of(image, base_image=needs.base_image, digest=needs.registry_digest)
        for image, needs in the_plan.needs.items()
    }
    return decide(the_plan, facts)


def _verdict(decision: Decision) -> tuple[object, ...]:
    """What a spelling must not change: everything but the image as written in the container."""
    findings = tuple((f.policy, f.mode, f.rule, f.found, f.expected, f.denies, f.warns) for f in decision.findings)
    return decision.allowed, decision.verdict, decision.policies, decision.mode, findings


@fuzz(2000)
@given(st.data(), images(long=False) | images(long=True))
def test_every_spelling_gets_the_same_verdict(data: st.DataObject, image: Image) -> None:
    count("images: spellings through evaluation")
    spelled = data.draw(spellings(image))
    assert _verdict(_judged(spelled)) == _verdict(_judged(image.text)), (spelled, image.text)
