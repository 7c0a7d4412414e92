"""The example policies of examples/policies/, compiled, and the namespace labels that put them all in force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from image_gate.core.policy import CompiledPolicy, compile_policy

__all__ = ["EXAMPLE_DOCUMENTS", "EXAMPLE_POLICIES", "IN_FORCE_LABELS"]

_EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"
EXAMPLE_DOCUMENTS: tuple[dict[str, Any], ...] = tuple(
    yaml.safe_load(path.read_text()) for path in sorted(_EXAMPLES.glob("*.yaml"))
)
EXAMPLE_POLICIES: tuple[CompiledPolicy, ...] = tuple(
    compile_policy(document["metadata"]["name"], document["spec"]) for document in EXAMPLE_DOCUMENTS
)
IN_FORCE_LABELS = {"imagegate.io/pinning": "warn"}
"""warn-unpinned selects namespaces by this label; the others cover every namespace."""
