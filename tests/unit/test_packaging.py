"""The runtime wheel (what the Dockerfile installs into the image) carries image_gate and nothing else.

cloudsim, harness, the tests and the benchmarks are development code: shipping them would put a
fake cloud and a control-plane launcher into the image. dev/pyproject.toml installs them for
development instead. The wheel is built the way the Dockerfile builds it (``pip wheel --no-deps``),
but offline: no build isolation (setuptools comes from the test dependencies) and no index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_ONLY = ("cloudsim", "harness", "tests", "bench", "dev")

# Environments, caches, build output and image archives: not sources, and large (.venv, .mypy_cache).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "*_cache", ".hypothesis", "__pycache__", "*.egg-info", "build", "dist", ".bin", "*.tar", "*.whl"
)


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The file names inside a wheel built from a copy of the whole source tree.

    A copy, because setuptools writes build/ and egg-info next to the sources it builds, and the
    working tree is shared; the whole tree, so a package picked up from anywhere in it would show.
    """
    workdir = tmp_path_factory.mktemp("wheel")
    source = workdir / "source"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCES)
    out = workdir / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        check=True,
        cwd=workdir,
        timeout=300,
    )
    (wheel,) = out.glob("image_gate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_carries_no_development_package(wheel_names: list[str]) -> None:
    shipped = {name.split("/", 1)[0] for name in wheel_names}
    assert not shipped & set(DEVELOPMENT_ONLY), sorted(shipped)
    assert not [name for name in wheel_names if "cloudsim" in name or "harness" in name]


def test_wheel_carries_only_image_gate_and_its_metadata(wheel_names: list[str]) -> None:
    shipped = {name.split("/", 1)[0] for name in wheel_names}
    metadata = {top for top in shipped if top.startswith("image_gate-") and top.endswith(".dist-info")}
    assert len(metadata) == 1, sorted(shipped)
    assert shipped - metadata == {"image_gate"}


def test_wheel_carries_the_type_marker_and_the_runtime_layers(wheel_names: list[str]) -> None:
    assert "image_gate/py.typed" in wheel_names
    for layer in ("core", "facts", "clouds", "kube", "app"):
        assert f"image_gate/{layer}/__init__.py" in wheel_names
