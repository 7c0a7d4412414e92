"""Fuzz target 2: policies.

* Any JSON-ish spec (shaped like an ImageGatePolicy's, or not at all): `compile_policy` returns a
  `CompiledPolicy`, or raises `PolicyError` whose every problem names the field it is about
  (``spec.match.images[2]: ...``); never any other exception.
* Every glob of every policy that compiles matches any legal image, up to the longest a runtime accepts,
  in under 5 ms of CPU (issue 10 item 7: a backtracking matcher took 7.8 s on ``**a**a**a**a**b``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from image_gate.core.images import ImageReference
from image_gate.core.policy import CompiledPolicy, PolicyError, compile_policy
from tests.fuzz.cases import count, fuzz
from tests.fuzz.timing import cpu_seconds
from tests.image_strategies import Image, globs, images

MATCH_CPU_BUDGET = 0.005
"""Seconds of CPU one glob may take against one image (`tests.fuzz.timing`)."""
_NAMES_A_FIELD = re.compile(r"spec(\.[A-Za-z]+|\[\d+\])*: \S")

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
_DIGESTS = st.sampled_from(["sha256:" + "a" * 64, "sha256:" + "A" * 64, "sha256:abc", "sha512:" + "b" * 128, ""])
_GLOBS = globs(max_pieces=16) | st.sampled_from(["", " ", "swr.*.myhuaweicloud.com/**", "*.*.cr.aliyuncs.com/**"])
_VERSIONS = st.sampled_from([">=11", "22.04", "<24", "12.*", ">=12.*", "==7", "!=8", ">= 1", "x", "", ">=", "1..2"])


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's own shape, sometimes any JSON at all."""
    return st.one_of(value, value, value, JSON)


def _optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with any subset of ``fields``, sometimes an unknown field besides."""
    return st.fixed_dictionaries({}, optional={**fields, "unknownField": JSON})


_OS_RULE = _optional(
    {
        "name": _maybe(st.sampled_from(["Debian", "Ubuntu", "CentOS Linux", "debian gnu/linux", "", " ", "Ø"])),
        "versions": _maybe(st.lists(_maybe(_VERSIONS | st.integers(0, 30) | st.floats(0, 30)), max_size=3)),
    }
)
_EXPRESSION = _optional(
    {
        "key": _maybe(st.sampled_from(["team", "imagegate.io/pinning", "", "a/b/c"])),
        "operator": _maybe(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "in", "Gt"])),
        "values": _maybe(st.lists(_maybe(st.text(max_size=6)), max_size=3)),
    }
)
_SELECTOR = _optional(
    {
        "matchLabels": _maybe(st.dictionaries(st.text(max_size=8), _maybe(st.text(max_size=8)), max_size=3)),
        "matchExpressions": _maybe(st.lists(_maybe(_EXPRESSION), max_size=3)),
    }
)
SPECS: st.SearchStrategy[Any] = _maybe(
    _optional(
        {
            "mode": _maybe(st.sampled_from(["Enforce", "Warn", "Audit", "enforce"])),
            "onUnresolved": _maybe(st.sampled_from(["Deny", "Allow", "deny"])),
            "description": _maybe(st.text(max_size=20)),
            "match": _maybe(
                _optional(
                    {
                        "namespaceSelector": _maybe(_SELECTOR),
                        "excludeNamespaces": _maybe(st.lists(_maybe(st.text(max_size=8)), max_size=3)),
                        "images": _maybe(st.lists(_maybe(_GLOBS), max_size=3)),
                        "excludeImages": _maybe(st.lists(_maybe(_GLOBS), max_size=3)),
                    }
                )
            ),
            "baseImage": _maybe(
                _optional(
                    {
                        "allowedOS": _maybe(st.lists(_maybe(_OS_RULE), max_size=3)),
                        "deniedOS": _maybe(st.lists(_maybe(_OS_RULE), max_size=3)),
                        "allowedLayerDigests": _maybe(st.lists(_maybe(_DIGESTS), max_size=3)),
                    }
                )
            ),
            "digest": _maybe(
                _optional(
                    {
                        "requirePinned": _maybe(st.booleans()),
                        "matchRegistry": _maybe(st.booleans()),
                        "allowed": _maybe(st.lists(_maybe(_DIGESTS), max_size=3)),
                    }
                )
            ),
        }
    )
)


def _compiled_or_refused(spec: Any) -> CompiledPolicy | None:
    try:
        return compile_policy("fuzzed", spec, generation=1)
    except PolicyError as exc:
        problems = exc.problems
    assert problems, spec
    for problem in problems:
        assert _NAMES_A_FIELD.match(problem), (problem, spec)
    return None


def _assert_globs_are_fast(policy: CompiledPolicy, legal: list[Image]) -> None:
    for glob in (*policy.images, *policy.exclude_images):
        for image in legal:
            reference = ImageReference.parse(image.text)
            took = cpu_seconds(functools.partial(glob.matches, reference), budget=MATCH_CPU_BUDGET)
            assert took < MATCH_CPU_BUDGET, (glob.text, reference.normalized, f"{took * 1000:.1f} ms")


@fuzz(1500)
@given(SPECS, st.lists(images(long=True), min_size=1, max_size=2))
def test_any_spec_compiles_or_names_the_field(spec: Any, legal: list[Image]) -> None:
    count("policies: any spec")
    policy = _compiled_or_refused(spec)
    if policy is not None:
        _assert_globs_are_fast(policy, legal)


@fuzz(1000)
@given(st.lists(globs(max_pieces=40), min_size=1, max_size=3), st.lists(images(long=True), min_size=1, max_size=3))
def test_long_globs_match_any_legal_image_fast(patterns: list[str], legal: list[Image]) -> None:
    count("policies: long globs")
    spec = {"match": {"images": patterns[:2], "excludeImages": patterns[2:]}, "digest": {"requirePinned": True}}
    policy = _compiled_or_refused(spec)
    assert policy is not None, patterns
    _assert_globs_are_fast(policy, legal)
