"""
Where Kubernetes objects keep their container images.

Pods list containers, initContainers and ephemeralContainers in ``spec``;
workloads carry a pod template (CronJobs one level deeper). This module only
reads object bodies: no I/O, no kopf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "JUDGED_RESOURCES",
    "POD_TEMPLATE_PATHS",
    "Container",
    "ContainerKind",
    "JudgedResource",
    "UnreadableObject",
    "containers_of",
]

ContainerKind = Literal["container", "initContainer", "ephemeralContainer"]
_LISTS: tuple[tuple[str, ContainerKind], ...] = (
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
)


@dataclass(frozen=True, slots=True)
class JudgedResource:
    """One kind image-gate judges: the one table the webhook, the chart and the tests are held to.

    The webhook registers one kopf handler per entry, with ``handler_id`` as its id and URL
    path; the chart's ValidatingWebhookConfiguration routes each resource to that path (the
    chart tests compare its rules with this table).
    """

    kind: str
    group: str
    version: str
    plural: str
    pod_spec_path: tuple[str, ...]
    """Path from the object to its pod spec."""
    update_only_subresources: tuple[str, ...] = ()
    """Subresources the same handler judges on UPDATE (``pods/ephemeralcontainers``: kubectl debug)."""

    @property
    def handler_id(self) -> str:
        """The kopf handler id, which is also the webhook's URL path (``/pods``)."""
        return self.plural


_TEMPLATE_SPEC = ("spec", "template", "spec")
JUDGED_RESOURCES: tuple[JudgedResource, ...] = (
    JudgedResource("Pod", "", "v1", "pods", ("spec",), update_only_subresources=("ephemeralcontainers",)),
    JudgedResource("Deployment", "apps", "v1", "deployments", _TEMPLATE_SPEC),
    JudgedResource("StatefulSet", "apps", "v1", "statefulsets", _TEMPLATE_SPEC),
    JudgedResource("DaemonSet", "apps", "v1", "daemonsets", _TEMPLATE_SPEC),
    JudgedResource("ReplicaSet", "apps", "v1", "replicasets", _TEMPLATE_SPEC),
    JudgedResource("Job", "batch", "v1", "jobs", _TEMPLATE_SPEC),
    JudgedResource("CronJob", "batch", "v1", "cronjobs", ("spec", "jobTemplate", *_TEMPLATE_SPEC)),
)
"""Every kind image-gate judges, in the order the webhook registers them."""

POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {r.kind: r.pod_spec_path for r in JUDGED_RESOURCES}
"""Path from the object to its pod spec, by kind."""


class UnreadableObject(ValueError):
    """Raised when an object does not have the shape its kind promises."""


@dataclass(frozen=True, slots=True)
class Container:
    kind: ContainerKind
    name: str
    image: str
    """The image exactly as written in the object."""


def containers_of(kind: str, body: Mapping[str, Any]) -> list[Container]:
    """Every container of a Pod, or of a workload's pod template, in spec order."""
    path = POD_TEMPLATE_PATHS.get(kind)
    if path is None:
        raise UnreadableObject(f"image-gate does not know where a {kind} keeps its containers")
    spec: Mapping[str, Any] = body
    for depth, key in enumerate(path):
        inner = spec.get(key)
        where = ".".join(path[: depth + 1])
        if inner is None:
            raise UnreadableObject(f"the {kind} has no {where}")
        if not isinstance(inner, Mapping):
            raise UnreadableObject(f"{where} of the {kind} is not an object")
        spec = inner
    containers: list[Container] = []
    for field, container_kind in _LISTS:
        entries = spec.get(field) or []
        if not isinstance(entries, list):
            raise UnreadableObject(f"{'.'.join(path)}.{field} of the {kind} is not a list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise UnreadableObject(f"{'.'.join(path)}.{field}[{index}] of the {kind} is not an object")
            name = entry.get("name")
            image = entry.get("image")
            if image is None or image == "":
                # Workload templates may leave the image for tools to fill in later
                # (the API allows it); the pods the controller creates are checked then.
                continue
            containers.append(
                Container(
                    kind=container_kind,
                    name=name if isinstance(name, str) and name else f"#{index}",
                    image=image if isinstance(image, str) else repr(image),
                )
            )
    return containers
