"""
The validating webhook: kopf handlers that turn AdmissionReviews into verdicts.

One handler per resource, each with an explicit id, because the id is the
URL path the ValidatingWebhookConfiguration (owned by the Helm chart, not by
kopf) points at: ``/pods``, ``/deployments``, ``/statefulsets``,
``/daemonsets``, ``/replicasets``, ``/jobs``, ``/cronjobs``. The pods handler
also serves the ``pods/ephemeralcontainers`` subresource (kubectl debug).

What happens on each review:

* namespaces exempt by configuration (kube-system, image-gate's own) are
  admitted without a look, so a broken policy can never lock the cluster
  out of repairing itself;
* on UPDATE only containers whose image is new are judged;
* a denial raises `kopf.AdmissionError` (HTTP 403 in the response) with a
  message that lists every failing container; Warn findings become admission
  warnings; Audit findings are only counted and logged;
* a verdict that stood on stale facts (a cloud failed, the cache answered)
  says so: a warning names the image, the facts' age and the failure, and the
  log line lists them;
* a dry-run is judged like any request (lookups have no side effects), but
  posts no Event;
* every review is one structured log line and one metrics sample.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from image_gate.core import messages
from image_gate.core.admission import Admission, Review, changed_containers
from image_gate.core.clock import Deadline
from image_gate.core.evaluate import Decision, Subject
from image_gate.core.policy import CompiledPolicy
from image_gate.core.workloads import JUDGED_RESOURCES, UnreadableObject, containers_of
from image_gate.facts.store import REQUESTING_NAMESPACE
from image_gate.kube.controller import NAMESPACES_INDEX, POLICIES_INDEX, compiled_policies, namespace_labels
from image_gate.kube.namespaces import NamespaceLabels
from image_gate.kube.observe import AdmissionObserver
from image_gate.kube.readiness import Readiness

__all__ = ["HANDLED_RESOURCES", "WebhookApp", "guarded", "register_webhooks", "review_problem"]

logger = logging.getLogger("image_gate.admission")

# Handler id (= URL path) -> (group, version, plural, kind), from the core's one table.
HANDLED_RESOURCES: dict[str, tuple[str, str, str, str]] = {
    r.handler_id: (r.group, r.version, r.plural, r.kind) for r in JUDGED_RESOURCES
}
_NOT_READY_MESSAGE = "image-gate is starting and has not loaded the policies yet; retry in a few seconds"
_UNKNOWN_NAMESPACE_MESSAGE = (
    "image-gate cannot tell which policies apply in namespace {namespace}: it is new to image-gate and "
    "its labels could not be read from the API server; retry in a few seconds"
)


@dataclass
class WebhookApp:
    """What the handlers share: the admission core, metrics, readiness and exemptions."""

    admission: Admission
    metrics: AdmissionObserver
    readiness: Readiness
    exempt_namespaces: Collection[str]
    startup_wait: float = 1.0
    """How long a review waits for the indexes, at start-up and for a namespace the index does not
    have yet, in all, before refusing to judge. Short: it comes on top of the review's deadline, and
    both must fit the webhook's timeoutSeconds. (Readiness keeps the Service from sending reviews
    before start-up is done anyway.)"""
    namespaces: NamespaceLabels | None = None
    """Reads the labels of namespaces missing from the index; None: such a namespace has only the
    label Kubernetes sets on every namespace (tests that do not care)."""
    post_event: Callable[[Mapping[str, Any], str], None] = field(default=lambda body, message: None)
    """Posts a denial's Event: `image_gate.kube.events.DenialEvents.post` in the operator; nothing by default."""

    async def handle(
        self,
        *,
        kind: str,
        body: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        operation: str | None,
        subresource: str | None,
        dry_run: bool,
        namespace: str | None,
        indexes: Mapping[str, Any],
        warnings: list[str],
    ) -> None:
        namespace = namespace or ""
        if namespace in self.exempt_namespaces:
            return
        index_wait = Deadline.after(self.startup_wait)
        await self._wait_until_ready()

        try:
            containers = containers_of(kind, body)
            if operation == "UPDATE" and old is not None:
                containers = list(changed_containers(containers, containers_of(kind, old)))
        except UnreadableObject as exc:
            raise kopf.AdmissionError(f"image-gate cannot read this {kind}: {exc}", code=400) from None
        if not containers:
            return

        policies, _broken = compiled_policies(indexes[POLICIES_INDEX])
        subject = Subject(
            kind=kind,
            display_name=_display_name(body, namespace),
            namespace=namespace,
            namespace_labels=await self._namespace_labels(indexes[NAMESPACES_INDEX], namespace, policies, index_wait),
            containers=tuple(containers),
        )
        REQUESTING_NAMESPACE.set(namespace)  # the leader serves namespaces' pending lookups in turn
        review = await self.admission.review(subject, policies)
        self.metrics.admission(kind=kind, decision=review.decision, dry_run=dry_run, seconds=review.seconds)
        _log_review(review, operation=operation, subresource=subresource, dry_run=dry_run)

        warnings.extend(_decision_fields.warnings(review))
        if not review.decision.allowed:
            message = review.deny_message
            if not dry_run:
                try:
                    self.post_event(body, message)
                except Exception:  # an Event is a courtesy; it must never change the verdict
                    logger.exception("the denial's Event was not posted")
            raise kopf.AdmissionError(message, code=403)

    async def _namespace_labels(
        self, index: Mapping[str, Any], namespace: str, policies: Sequence[CompiledPolicy], wait: Deadline
    ) -> Mapping[str, str]:
        """The namespace's labels; for one the index lacks, from the API server (`NamespaceLabels`).

        When they cannot be read in time, the review is refused (503, the API server's failurePolicy
        does not apply: the user sees why and retries) if any policy selects namespaces by label:
        judged without its labels, the workload could escape an Enforce policy, and judged as if
        every selector matched, it could be denied by policies that do not apply to it. Without such
        a policy the labels change nothing, and the review goes on.
        """
        if self.namespaces is None:
            return namespace_labels(index, namespace)
        labels = await self.namespaces.labels(index, namespace, wait=wait.remaining())
        if labels is not None:
            return labels
        if any(p.namespace_selector.requirements and namespace not in p.exclude_namespaces for p in policies):
            raise kopf.AdmissionError(_UNKNOWN_NAMESPACE_MESSAGE.format(namespace=namespace), code=503)
        return namespace_labels(index, namespace)

    async def _wait_until_ready(self) -> None:
        if self.readiness.indexes.is_set():
            return
        try:
            await asyncio.wait_for(self.readiness.indexes.wait(), timeout=self.startup_wait)
        except TimeoutError:
            raise kopf.AdmissionError(_NOT_READY_MESSAGE, code=503) from None


_STATUS_REASONS = {400: "BadRequest", 403: "Forbidden", 503: "ServiceUnavailable"}
_INTERNAL_ERROR = "image-gate failed while judging this review; its log has the details\n"


def guarded(fn: kopf.WebhookFn) -> kopf.WebhookFn:
    """What kopf's webhook function is wrapped in: the review checked first, the verdict's status named after.

    kopf answers an AdmissionReview it finds no handler for with ``allowed:
    true``: a ValidatingWebhookConfiguration pointing at a wrong path, or
    sending deployments to ``/pods``, would silently admit everything. Here
    such a request is an HTTP error instead, so the API server applies the
    webhook's failurePolicy and says why. A body that is not an AdmissionReview,
    or whose fields kopf would trip over (an ``object`` that is a string), gets
    a 400 that says so, not a bare 500.

    kopf turns an unexpected exception in a handler into ``allowed: false``
    with the exception's text for the pod's creator; here it is an HTTP 500
    instead (kopf has logged the traceback), so the failurePolicy decides.

    And kopf's statuses carry a code but no ``reason``; kubectl takes its
    "Error from server (Forbidden)" from the reason, so it is filled in.
    """

    async def serve(request: Any, **kwargs: Any) -> Any:
        review_problem(request, kwargs.get("webhook"))
        response = await fn(request, **kwargs)
        status: Any = response.get("response", {}).get("status")  # kopf's TypedDict knows no reason
        if isinstance(status, dict):
            code = status.get("code", 500)
            if code not in _STATUS_REASONS:  # not one of ours: kopf's 500 for a handler that raised
                raise web.HTTPInternalServerError(text=_INTERNAL_ERROR)
            status.setdefault("reason", _STATUS_REASONS[code])
        return response

    return serve


def review_problem(review: object, webhook: str | None) -> None:
    """Raise an aiohttp HTTP error when ``review`` is not an AdmissionReview this path judges.

    Checks every field kopf reads before it calls a handler, so a hostile or broken body is
    a 4xx that names the field rather than an exception inside kopf.
    """
    if webhook not in HANDLED_RESOURCES:
        paths = ", ".join(f"/{handler}" for handler in HANDLED_RESOURCES)
        raise web.HTTPNotFound(text=f"image-gate has no webhook at /{webhook or ''}; its paths are {paths}\n")
    if not isinstance(review, Mapping) or review.get("kind") != "AdmissionReview":
        raise web.HTTPBadRequest(text="the body is not an AdmissionReview\n")
    if review.get("apiVersion") != "admission.k8s.io/v1":
        raise web.HTTPBadRequest(
            text=f"image-gate answers admission.k8s.io/v1 AdmissionReviews, not {review.get('apiVersion')}\n"
        )
    request = review.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("resource"), Mapping):
        raise web.HTTPBadRequest(text="the AdmissionReview has no request, or its request names no resource\n")
    group, version, plural, _ = HANDLED_RESOURCES[webhook]
    resource = request["resource"]
    if (resource.get("group"), resource.get("resource")) != (group, plural):
        wanted = f"{group}/{plural}" if group else plural
        got = (
            f"{resource.get('group')}/{resource.get('resource')}" if resource.get("group") else resource.get("resource")
        )
        raise web.HTTPBadRequest(
            text=f"/{webhook} judges {wanted}, not {got}: check the ValidatingWebhookConfiguration's paths\n"
        )
    if resource.get("version") != version:
        raise web.HTTPBadRequest(text=f"/{webhook} judges {version} objects, not version {resource.get('version')!r}\n")
    _field_problem(request)


# Fields of ``request`` that kopf reads before any handler runs, and the JSON types they may have.
_REQUEST_FIELDS: tuple[tuple[str, type | tuple[type, ...], bool], ...] = (
    ("uid", str, True),
    ("operation", str, True),
    ("userInfo", Mapping, True),
    ("subResource", str, False),
    ("dryRun", bool, False),
    ("object", Mapping, False),
    ("oldObject", Mapping, False),
)
_JSON_TYPES = {str: "a string", Mapping: "an object", bool: "a boolean"}
_METADATA_STRINGS = ("name", "generateName", "namespace", "uid")  # kopf keys its memory on the uid


def _field_problem(request: Mapping[str, Any]) -> None:
    for name, kind, required in _REQUEST_FIELDS:
        value = request.get(name)
        if value is None:
            if required:
                raise web.HTTPBadRequest(text=f"request.{name} is missing\n")
            continue
        if not isinstance(value, kind):
            raise web.HTTPBadRequest(
                text=f"request.{name} must be {_JSON_TYPES[kind]}, not {type(value).__name__}\n"  # type: ignore[index]
            )
    new, old = request.get("object"), request.get("oldObject")
    if new is None and old is None:
        raise web.HTTPBadRequest(text="the review carries neither request.object nor request.oldObject\n")
    for name, body in (("object", new), ("oldObject", old)):
        metadata = {} if body is None else body.get("metadata", {})  # kopf reads a null one as an object
        if not isinstance(metadata, Mapping):
            raise web.HTTPBadRequest(text=f"request.{name}.metadata must be an object\n")
        for key in _METADATA_STRINGS:
            if not isinstance(metadata.get(key, ""), str):
                raise web.HTTPBadRequest(text=f"request.{name}.metadata.{key} must be a string\n")


def register_webhooks(registry: kopf.OperatorRegistry, app: WebhookApp) -> None:
    for handler_id, (group, version, plural, kind) in HANDLED_RESOURCES.items():
        _register(registry, app, handler_id, group, version, plural, kind)


def _register(
    registry: kopf.OperatorRegistry, app: WebhookApp, handler_id: str, group: str, version: str, plural: str, kind: str
) -> None:
    # '*' lets the pods handler also see pods/ephemeralcontainers; for the other
    # resources the chart's rules send no subresources, so it changes nothing.
    @kopf.on.validate(
        group, version, plural, id=handler_id, operations=["CREATE", "UPDATE"], subresource="*", registry=registry
    )
    async def validate(**kwargs: Any) -> None:
        await app.handle(
            kind=kind,
            body=kwargs["body"],
            old=kwargs.get("old"),
            operation=kwargs.get("operation"),
            subresource=kwargs.get("subresource"),
            dry_run=bool(kwargs.get("dryrun")),
            namespace=kwargs.get("namespace"),
            indexes=kwargs,
            warnings=kwargs["warnings"],
        )


def _display_name(body: Mapping[str, Any], namespace: str) -> str:
    metadata = body.get("metadata") or {}
    name = metadata.get("name") or (f"{metadata['generateName']}*" if metadata.get("generateName") else "(unnamed)")
    return f"{namespace}/{name}" if namespace else str(name)


_LOGGED_FINDINGS = 100
"""Findings a review's log line carries in full; the metrics count them all. A pod of thousands of
containers can have tens of thousands: writing each would cost the review its deadline and give a line
of megabytes, which log shippers cut anyway."""


class _DecisionFields:
    """The review line's fields and the warnings that follow from the plan and the decision alone, worked out
    once per decision.

    A warm review of a workload seen before gets the very same decision object back
    (`image_gate.core.plans`), so its policies, images and findings are written from what the
    last line wrote; the object's name, the operation, stale facts and timing are per review.
    """

    size = 256

    def __init__(self) -> None:
        # By id, holding the decision and the plan's needs so the ids stay theirs; least recent dropped first.
        self._known: OrderedDict[int, tuple[Decision, object, dict[str, Any], list[str]]] = OrderedDict()

    def of(self, review: Review) -> dict[str, Any]:
        return self._known_for(review)[0]

    def warnings(self, review: Review) -> list[str]:
        """`Review.warnings`: the decision's worded once; a review that stood on stale facts words its own."""
        return review.warnings if review.stale else self._known_for(review)[1]

    def _known_for(self, review: Review) -> tuple[dict[str, Any], list[str]]:
        decision, needs = review.decision, review.plan.needs
        known = self._known.get(id(decision))
        if known is not None and known[0] is decision and known[1] is needs:
            return known[2], known[3]
        fields = {
            "decision": decision.verdict,
            "policies": list(decision.policies),
            "images": sorted(str(image) for image in needs),
            "findings": [finding.as_dict() for finding in decision.findings[:_LOGGED_FINDINGS]],
            "findings_omitted": max(0, len(decision.findings) - _LOGGED_FINDINGS),
        }
        warnings = messages.warning_messages(decision.warnings)
        self._known[id(decision)] = (decision, needs, fields, warnings)
        if len(self._known) > self.size:
            self._known.popitem(last=False)
        return fields, warnings


_decision_fields = _DecisionFields()


def _log_review(review: Review, *, operation: str | None, subresource: str | None, dry_run: bool) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return  # every review would build these fields; skip them when nobody reads them
    decided = _decision_fields.of(review)
    logger.info(
        "admission %s",
        decided["decision"],
        extra={
            "review": {
                "kind": review.subject.kind,
                "object": review.subject.display_name,
                "operation": operation,
                "subresource": subresource,
                "dry_run": dry_run,
                **decided,
                "stale": review.stale_as_data() if review.stale else [],
                "seconds": round(review.seconds, 6),
            }
        },
    )
