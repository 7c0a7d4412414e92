"""
``image-gate audit``: what would the policies deny right now, in the cluster the kubeconfig names?

A preview for rolling a policy out (Audit, then Warn, then Enforce): it reads
what runs (Pods and the pod templates of every workload kind the webhook
judges), the namespaces' labels, the cluster's ImageGatePolicies (or the
policy files given) and the cluster's ImageFacts, and judges them with the
leader's audit (`image_gate.core.audit`), which is the webhook's evaluation.

It writes nothing and calls no cloud: a fact the cluster has not resolved yet
is an ``error`` result ("not resolved yet"), not a lookup (``app.auditcluster``
reads the cluster).

Exit codes: 0 nothing would be denied, 1 something would (a ``fail``, or a
``warn`` of a Warn-mode policy, which Enforce would deny, or an ``error`` that
stands on a stored lookup failure under ``onUnresolved: Deny``, which admission
would deny from the same stored answer), 2 a usage, configuration or
connection error. An image not resolved yet does not make it 1: it could not
be judged, and the summary says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from image_gate.app.policyfiles import PolicyFileError, load_policy_files
from image_gate.app.settings import Settings, SettingsError, add_run_arguments
from image_gate.core.audit import AuditPass, AuditResult
from image_gate.core.images import ImageReference, InvalidImageReference
from image_gate.core.policy import CompiledPolicy

__all__ = ["EXIT_DENIED", "EXIT_ERROR", "EXIT_NOTHING_DENIED", "add_audit_parser", "audit_command"]

EXIT_NOTHING_DENIED: Final = 0
EXIT_DENIED: Final = 1
EXIT_ERROR: Final = 2

RESULT_KINDS: Final = ("fail", "warn", "error", "pass", "skip")
"""In the order the table lists them: what needs attention first."""
WOULD_DENY: Final = frozenset({"fail", "warn"})
COLUMNS: Final = ("NAMESPACE", "KIND", "NAME", "CONTAINER", "IMAGE", "POLICY", "RESULT", "MESSAGE")


def add_audit_parser(commands: Any) -> None:
    """``image-gate audit``'s flags, on the ``add_subparsers`` object of the main parser."""
    parser = commands.add_parser(
        "audit",
        help="preview: what the policies would deny in the current cluster (kubeconfig); writes nothing",
        description="Judge what runs in the cluster (Pods and workload templates) against the cluster's "
        "ImageGatePolicies, or the policy files given, with the facts the cluster has stored. Writes nothing, "
        "calls no cloud. Exit 0: nothing would be denied; 1: something would; 2: usage or connection error.",
    )
    parser.add_argument(
        "--policy",
        "-p",
        action="append",
        type=Path,
        metavar="FILE",
        help="judge against these ImageGatePolicy YAML files instead of the cluster's policies; repeat for more",
    )
    parser.add_argument(
        "--namespace", "-n", dest="audit_namespace", metavar="NS", help="only this namespace (default: all)"
    )
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table")
    parser.add_argument(
        "--all", dest="show_all", action="store_true", help="table: list pass and skip results too (JSON always does)"
    )
    # The registry mapping decides which facts an image needs; exempt namespaces are never judged.
    add_run_arguments(parser, only=("config", "exempt_namespaces"))


def audit_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_arguments(args)
        files = load_policy_files(args.policy) if args.policy else None
    except (PolicyFileError, SettingsError) as exc:
        return _error(str(exc))
    logging.basicConfig(level=logging.ERROR, format="image-gate: %(message)s")
    # The cluster reader logs in as kopf does: imported only for this command.
    from image_gate.app.auditcluster import ClusterUnreadable, audit_cluster

    try:
        read = asyncio.run(audit_cluster(settings, files, namespace=args.audit_namespace))
    except ClusterUnreadable as exc:
        return _error(str(exc))
    preview = Preview.of(read.judged, objects=read.objects, notes=read.notes, policies=read.policies)
    for note in preview.notes:
        print(f"image-gate: {note}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(preview.as_json(), indent=2))
    else:
        print(preview.table(show_all=args.show_all))
    return EXIT_DENIED if preview.would_deny else EXIT_NOTHING_DENIED


@dataclass(frozen=True, slots=True)
class Preview:
    """One audit pass over the cluster, and what to tell about it."""

    results: tuple[AuditResult, ...]
    policies: tuple[str, ...]
    objects: int
    unresolved: tuple[str, ...]
    """Images whose facts the cluster has not stored (yet): their rules are ``error`` results."""
    notes: tuple[str, ...] = ()
    """What the reader should know besides the results (policies that are not Ready, ...)."""
    denied_unresolved: int = 0
    """``error`` results of a stored failure (or "not found") under ``onUnresolved: Deny``: admission would
    deny them too, from the same stored answer."""

    @classmethod
    def of(
        cls,
        judged: AuditPass,
        *,
        objects: int,
        notes: Sequence[str] = (),
        policies: Sequence[CompiledPolicy] = (),
    ) -> Preview:
        """The pass, worded for a preview; ``policies`` (those judged) say which deny what they cannot check."""
        unresolved = {str(image) for image, _, _ in judged.missing}
        results = sorted((_preview_wording(result, unresolved) for result in judged.results), key=_order)
        denying = {policy.name for policy in policies if policy.on_unresolved == "Deny"}
        denied_unresolved = sum(
            1 for r in results if r.result == "error" and r.policy in denying and _normalized(r.image) not in unresolved
        )
        return cls(tuple(results), judged.policies, objects, tuple(sorted(unresolved)), tuple(notes), denied_unresolved)

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(result.result for result in self.results)
        return {kind: counts.get(kind, 0) for kind in RESULT_KINDS}

    @property
    def would_deny(self) -> bool:
        return self.denied_unresolved > 0 or any(result.result in WOULD_DENY for result in self.results)

    def as_json(self) -> dict[str, Any]:
        return {
            "wouldDeny": self.would_deny,
            "policies": list(self.policies),
            "objects": self.objects,
            "summary": self.summary,
            "unresolved": list(self.unresolved),
            "notes": list(self.notes),
            "results": [asdict(result) for result in self.results],
        }

    def table(self, *, show_all: bool) -> str:
        shown = [r for r in self.results if show_all or r.result not in ("pass", "skip")]
        rows = [
            (r.namespace, r.kind, r.name, r.container, r.image, r.policy, r.result, _short_message(r)) for r in shown
        ]
        lines = _aligned([COLUMNS, *rows]) if rows else []
        counts = ", ".join(f"{count} {kind}" for kind, count in self.summary.items())
        judged = f"{self.objects} objects, {len(self.policies)} policies ({', '.join(self.policies) or 'none'})"
        lines.append(f"{counts} ({judged})")
        if self.denied_unresolved:
            lines.append(
                f"{self.denied_unresolved} error results stand on a stored lookup failure or 'not found' under "
                "onUnresolved: Deny: admission would deny them too"
            )
        if self.unresolved:
            lines.append(
                f"{len(self.unresolved)} images have facts the cluster has not resolved yet (error results): "
                "image-gate's leader resolves them for the policies in the cluster; run again later"
            )
        return "\n".join(lines)


def _preview_wording(result: AuditResult, unresolved: Iterable[str]) -> AuditResult:
    """The leader's "the resolver was asked" is not true of a preview: it asks nobody."""
    if result.result != "error" or _normalized(result.image) not in unresolved:
        return result
    return replace(
        result,
        message=f'{_subject(result)}: policy "{result.policy}" rule {result.rule} could not be checked: '
        "not resolved yet (the cluster has stored no fact about this image)",
    )


def _order(result: AuditResult) -> tuple[int, str, str, str, str, str, str]:
    """What needs attention first, then by object, container and policy rule."""
    rank = RESULT_KINDS.index(result.result)
    return (rank, result.namespace, result.kind, result.name, result.container, result.policy, result.rule)


def _short_message(result: AuditResult) -> str:
    """The result's first line without the container and policy the other columns show."""
    line = result.message.splitlines()[0] if result.message else ""
    prefix = f'{_subject(result)}: policy "{result.policy}" '
    return line.removeprefix(prefix)


def _subject(result: AuditResult) -> str:
    return f'container "{result.container}" (image {result.image})'


def _normalized(image: str) -> str:
    try:
        return str(ImageReference.parse(image))
    except InvalidImageReference:
        return image


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "   ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]


def _error(message: str) -> int:
    print(f"image-gate: {message}", file=sys.stderr)
    return EXIT_ERROR
