"""
The ImageGatePolicy controller: kopf indexes that the webhook reads, and policy status.

Admission reads the policies (compiled) and the namespaces' labels (for
``namespaceSelector``) from two kopf indexes, current through kopf's watches.
The one API call on the admission path is for a namespace the index has not
seen yet (created together with the workload): `image_gate.kube.namespaces`.
A policy that does not compile is indexed as its `PolicyError`, so it is
reported and counted but never takes part in admission, and never disturbs
the others.

Readiness: kopf calls ordinary handlers only once *every* index has been
filled from its initial listing. Every cluster has namespaces, so the first
namespace event is the moment both indexes are complete; `Readiness` is set
then and the webhook starts judging. Until then it refuses to judge rather
than admit everything under an empty policy list. Afterwards `/readyz` also
follows the two watches (`image_gate.kube.watchhealth`): one that stops
hearing from the API server makes the replica unready.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from image_gate.core import messages
from image_gate.core.policy import API_GROUP, API_VERSION, CompiledPolicy, PolicyError, compile_policy
from image_gate.kube.events import DenialEvents
from image_gate.kube.observe import AdmissionObserver
from image_gate.kube.readiness import Readiness

__all__ = [
    "NAMESPACES_INDEX",
    "POLICIES_INDEX",
    "compiled_policies",
    "policy_condition",
    "register_controller",
]

POLICIES_INDEX = "image_gate_policies"
NAMESPACES_INDEX = "image_gate_namespaces"
POLICY_RESOURCE = (API_GROUP, API_VERSION, "imagegatepolicies")


def compile_or_error(name: str, spec: Mapping[str, Any], generation: int | None) -> CompiledPolicy | PolicyError:
    try:
        return compile_policy(name, dict(spec), generation=generation)
    except PolicyError as exc:
        return exc


def policy_condition(result: CompiledPolicy | PolicyError, generation: int | None) -> dict[str, Any]:
    """The ``Ready`` condition that ``status.conditions`` should hold for this result."""
    if isinstance(result, PolicyError):
        status, reason, message = "False", "Invalid", messages.policy_invalid_message(result.problems)
    else:
        status, reason, message = "True", "Compiled", messages.policy_ready_message(result.mode)
    return {"type": "Ready", "status": status, "reason": reason, "message": message, "observedGeneration": generation}


def compiled_policies(index: Mapping[str, Any]) -> tuple[list[CompiledPolicy], list[PolicyError]]:
    """Split the policy index into the policies in force and the broken ones."""
    good: list[CompiledPolicy] = []
    bad: list[PolicyError] = []
    for result in _values(index):
        (bad if isinstance(result, PolicyError) else good).append(result)
    good.sort(key=lambda policy: policy.name)
    return good, bad


def namespace_labels(index: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """A namespace's labels; for a namespace not (yet) indexed, the label Kubernetes always sets."""
    for labels in index.get(namespace, ()):
        return dict(labels)
    return {"kubernetes.io/metadata.name": namespace}


def _values(index: Mapping[str, Any]) -> Iterator[Any]:
    for store in index.values():
        yield from store


def register_controller(
    registry: kopf.OperatorRegistry, *, readiness: Readiness, metrics: AdmissionObserver, events: DenialEvents
) -> None:
    @kopf.index(*POLICY_RESOURCE, id=POLICIES_INDEX, registry=registry)
    def index_policy(name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict[str, Any]:
        return {name: compile_or_error(name, spec, meta.get("generation"))}

    @kopf.index("", "v1", "namespaces", id=NAMESPACES_INDEX, registry=registry)
    def index_namespace(name: str, labels: kopf.Labels, **_: Any) -> dict[str, Any]:
        return {name: dict(labels)}

    @kopf.on.event("", "v1", "namespaces", id="readiness", registry=registry)
    def indexes_complete(**_: Any) -> None:
        readiness.indexes.set()
        events.capture()

    @kopf.on.event(*POLICY_RESOURCE, id="policy-status", registry=registry)
    def report_policy_status(
        type: str | None,
        name: str,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        patch: kopf.Patch,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        good, bad = compiled_policies(kwargs[POLICIES_INDEX])
        metrics.policy_counts(ready=len(good), invalid=len(bad))
        if type == "DELETED":
            return
        generation = meta.get("generation")
        result = compile_or_error(name, spec, generation)
        wanted = policy_condition(result, generation)
        current: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if all(current.get(key) == value for key, value in wanted.items()):
            return  # already reported: writing again would only cause another event
        if isinstance(result, PolicyError):
            logger.warning(wanted["message"])
        transition = current.get("lastTransitionTime") if current.get("status") == wanted["status"] else None
        wanted["lastTransitionTime"] = transition or _now()
        patch.status["conditions"] = [wanted]
        patch.status["observedGeneration"] = generation


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
