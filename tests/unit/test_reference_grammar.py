"""Our parser against distribution/reference's own test inputs (tests/data/reference_cases.json).

The verdicts in the data are those of ``reference.ParseNormalizedNamed``, the function kubelet and containerd
apply to a pod's ``image`` field: it turns familiar names into full ones (``nginx`` is
``docker.io/library/nginx``) and refuses a bare image ID. ``ParseAnyReference`` would accept an ID or a bare
digest, but only ``docker`` CLI commands that take "an image or an ID" use it, never a pod's image. The data
file says where each input comes from and why two upstream verdicts differ from ``reference.Parse``'s.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from image_gate.core.images import ImageReference, InvalidImageReference, canonical_host

_DATA = json.loads((Path(__file__).parents[1] / "data" / "reference_cases.json").read_text(encoding="utf-8"))
_CASES: list[dict[str, Any]] = _DATA["cases"]


def test_the_data_names_its_origin_and_license() -> None:
    assert "github.com/distribution/reference" in _DATA["origin"]
    assert _DATA["license"].startswith("Apache-2.0")
    assert len(_CASES) > 100


@pytest.mark.parametrize("case", _CASES, ids=[case["input"][:60] or "<empty>" for case in _CASES])
def test_our_verdict_is_the_runtimes(case: dict[str, Any]) -> None:
    expected = case["normalized"]
    if not expected["valid"]:
        with pytest.raises(InvalidImageReference):
            ImageReference.parse(case["input"])
        return
    image = ImageReference.parse(case["input"])
    default_tag = None if "digest" in expected else "latest"
    assert (image.registry, image.repository, image.tag, image.digest) == (
        canonical_host(expected["domain"]),
        expected["path"],
        expected.get("tag", default_tag),
        expected.get("digest"),
    )
