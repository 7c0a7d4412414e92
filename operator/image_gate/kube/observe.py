"""
What the Kubernetes side reports, as a Protocol: ``image_gate.app.metrics.Metrics`` implements it,
so the handlers never import the application that wires them.
"""

from __future__ import annotations

from typing import Protocol

from image_gate.core.evaluate import Decision

__all__ = ["AdmissionObserver"]


class AdmissionObserver(Protocol):
    def admission(self, *, kind: str, decision: Decision, dry_run: bool, seconds: float) -> None:
        """One review answered: its kind, verdict, whether it was a dry run, and how long it took."""

    def policy_counts(self, *, ready: int, invalid: int) -> None:
        """The policies known now: how many compiled, how many are broken."""
