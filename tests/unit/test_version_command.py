"""``image-gate version``: the version, and the commit the image was built from (IMAGE_GATE_REVISION)."""

from __future__ import annotations

import pytest

from image_gate import __version__
from image_gate.app.cli import main


def test_version_names_the_revision_the_image_was_built_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGE_GATE_REVISION", "0123abc")
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"image-gate {__version__} (revision 0123abc)\n"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_version_without_a_revision_says_unknown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("IMAGE_GATE_REVISION", raising=False)
    else:
        monkeypatch.setenv("IMAGE_GATE_REVISION", value)
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"image-gate {__version__} (revision unknown)\n"
