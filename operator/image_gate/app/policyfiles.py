"""
ImageGatePolicy YAML files, for ``image-gate check``.

A file may hold several documents (``---``); each must be an ImageGatePolicy of
``imagegate.io/v1alpha1``. Every problem names the file, the document and the
field, because that is what a person fixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from image_gate.core.policy import API_GROUP, API_VERSION, KIND, CompiledPolicy, PolicyError, compile_policy

__all__ = ["PolicyFileError", "load_policy_files"]


class PolicyFileError(ValueError):
    """Raised when a policy file cannot be read or holds an invalid policy."""


def load_policy_files(paths: Sequence[Path]) -> list[CompiledPolicy]:
    policies: list[CompiledPolicy] = []
    for path in paths:
        policies.extend(_load(path))
    names = [policy.name for policy in policies]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PolicyFileError(f"policy names must be unique, but {', '.join(duplicates)} appear more than once")
    return policies


def _load(path: Path) -> list[CompiledPolicy]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"{path}: not valid YAML: {exc}") from None
    if not documents:
        raise PolicyFileError(f"{path}: holds no policy")
    return [_compile(path, index, document) for index, document in enumerate(documents, 1)]


def _compile(path: Path, index: int, document: object) -> CompiledPolicy:
    where = f"{path} (document {index})"
    if not isinstance(document, dict):
        raise PolicyFileError(f"{where}: must be a mapping, an ImageGatePolicy")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version != f"{API_GROUP}/{API_VERSION}" or kind != KIND:
        raise PolicyFileError(
            f"{where}: apiVersion/kind must be {API_GROUP}/{API_VERSION} {KIND}, not {api_version} {kind}"
        )
    metadata = document.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise PolicyFileError(f"{where}: metadata.name is required")
    try:
        return compile_policy(name, document.get("spec"))
    except PolicyError as exc:
        raise PolicyFileError(f"{where}: policy {name!r}: {'; '.join(exc.problems)}") from None
