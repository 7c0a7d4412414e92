"""
``image-gate``: ``run`` the webhook, ``check`` images without a cluster, ``audit`` what runs in one
(``app.auditcmd``), print the ``version``.

Exit codes of ``check``: 0 every image is allowed, 1 something is denied,
2 a usage or configuration error (the message names the file and the field).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from image_gate import __version__
from image_gate.app.auditcmd import add_audit_parser, audit_command
from image_gate.app.policyfiles import PolicyFileError, load_policy_files
from image_gate.app.settings import Settings, SettingsError, add_run_arguments
from image_gate.core.admission import Admission, Review
from image_gate.core.evaluate import Subject
from image_gate.core.policy import CompiledPolicy
from image_gate.core.workloads import Container

__all__ = ["main"]

EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        # The image sets IMAGE_GATE_REVISION (the Dockerfile's REVISION build argument): which commit
        # a running webhook was built from, for bug reports. A source checkout has none.
        revision = os.environ.get("IMAGE_GATE_REVISION", "").strip() or "unknown"
        print(f"image-gate {__version__} (revision {revision})")
        return 0
    if args.command == "check":
        return _check(args)
    if args.command == "run":
        return _run(args)
    if args.command == "audit":
        return audit_command(args)
    parser.print_help()
    return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-gate",
        description="Judge container images by their base OS (Huawei Cloud HSS) and registry digest (Alibaba Cloud).",
        epilog="check exits 0 when every image is allowed, 1 when one is denied, 2 on a usage or configuration error.",
    )
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the admission webhook and the policy controller")
    add_run_arguments(run)
    check = commands.add_parser("check", help="judge images against policy files, without a cluster")
    check.add_argument("images", nargs="+", metavar="IMAGE")
    check.add_argument(
        "--policy",
        "-p",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="ImageGatePolicy YAML (several documents allowed); repeat for more files",
    )
    check.add_argument("--namespace", "-n", default="default", help="the namespace the pod would run in")
    check.add_argument(
        "--namespace-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of that namespace, for namespaceSelector; repeat for more",
    )
    check.add_argument("--output", "-o", choices=("text", "json"), default="text")
    check.add_argument(
        "--from-cluster",
        action="store_true",
        help="answer from the cluster's ImageFacts first (kubeconfig), as admission would; the clouds for the rest",
    )
    # The run settings a check reads: the same flags, variables and defaults, declared once in Settings.
    add_run_arguments(check, only=("config", "deadline_seconds", "hss_endpoint", "sas_endpoint", "cloud_ca_file"))
    add_audit_parser(commands)
    commands.add_parser("version", help="print the version")
    return parser


class ClusterFactsUnavailable(Exception):
    """``--from-cluster`` could not list the cluster's ImageFacts; the message says why."""


def _error(message: str) -> int:
    print(f"image-gate: {message}", file=sys.stderr)
    return EXIT_ERROR


def _check(args: argparse.Namespace) -> int:
    try:
        policies = load_policy_files(args.policy)
        labels = _labels(args.namespace_label)
        settings = Settings.from_arguments(args)
    except (PolicyFileError, SettingsError) as exc:
        return _error(str(exc))
    # A cloud without credentials is worth a warning for a server, not for a check: a finding
    # that needed it already says so.
    logging.basicConfig(level=logging.ERROR, format="image-gate: %(message)s")
    containers = tuple(Container("container", f"image-{n}", image) for n, image in enumerate(args.images, 1))
    subject = Subject("Pod", f"{args.namespace}/image-gate-check", args.namespace, labels, containers)
    try:
        review = asyncio.run(_review(settings, subject, policies, from_cluster=args.from_cluster))
    except ClusterFactsUnavailable as exc:
        return _error(str(exc))
    _print_review(review, output=args.output)
    return EXIT_ALLOWED if review.decision.allowed else EXIT_DENIED


async def _review(
    settings: Settings, subject: Subject, policies: list[CompiledPolicy], *, from_cluster: bool = False
) -> Review:
    from image_gate.app.wiring import fact_resolver  # the cloud clients: only when needed

    async with fact_resolver(settings) as resolver:
        if not from_cluster:
            return await Admission(resolver, deadline=settings.deadline).review(subject, policies)
        from image_gate.app.clusterfacts import list_cluster_facts
        from image_gate.facts.shared import SharedFacts
        from image_gate.kube.kubeapi import ApiError, KubeApi

        api = KubeApi()
        try:
            listed = await list_cluster_facts(api)
        except ApiError as exc:
            raise ClusterFactsUnavailable(
                f"--from-cluster: the cluster's ImageFacts could not be listed: {exc}"
            ) from None
        finally:
            await api.aclose()
        facts = SharedFacts(resolver, listed)
        try:
            return await Admission(facts, deadline=settings.deadline).review(subject, policies)
        finally:
            await facts.aclose()


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PolicyFileError(f"--namespace-label: expected KEY=VALUE, not {pair!r}")
        labels[key] = value
    return labels


def _print_review(review: Review, *, output: str) -> None:
    decision = review.decision
    if output == "json":
        document: dict[str, Any] = {
            "allowed": decision.allowed,
            "policies": list(decision.policies),
            "message": review.deny_message if not decision.allowed else None,
            "warnings": review.warnings,
            "findings": [finding.as_dict() for finding in decision.findings],
            "stale": review.stale_as_data(),
        }
        print(json.dumps(document, indent=2))
        return
    if decision.allowed:
        covered = ", ".join(decision.policies) or "no policy covers these images"
        print(f"allowed ({covered})")
    else:
        print(review.deny_message)
    for warning in review.warnings:
        print(f"Warning: {warning}")


def _run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_arguments(args)
    except SettingsError as exc:
        return _error(str(exc))
    from image_gate.app.logs import configure_logging
    from image_gate.app.run import run_operator
    from image_gate.app.wiring import StartupError

    configure_logging(log_format=settings.log_format, level=settings.log_level, http_logs=settings.debug_http_logs)
    try:
        asyncio.run(run_operator(settings))
    except KeyboardInterrupt:
        pass
    except StartupError as exc:
        return _error(str(exc))
    return 0
