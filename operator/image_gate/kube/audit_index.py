"""
What runs in the cluster, as the audit reads it: one kopf index per audited kind.

Every replica keeps these indexes (a watch each, no LIST per pass), so the
replica that takes the Lease over can audit at once, without listing the
cluster again. Each index keeps only `AuditedObject` (kind, namespace, name,
uid, containers): a few hundred bytes per object instead of kopf's whole body,
so 5,000 pods cost a few MiB. The leader alone judges them
(`image_gate.kube.audit`).

A ReplicaSet owned by a Deployment and a Job owned by a CronJob are audited
through their owner (`audited_object` gives None for them): the index then
holds nothing for them, and an object that becomes owned later is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf

from image_gate.core.audit import AuditedObject, audited_object
from image_gate.core.policy import CompiledPolicy
from image_gate.core.workloads import JUDGED_RESOURCES, JudgedResource
from image_gate.kube.controller import NAMESPACES_INDEX, POLICIES_INDEX, compiled_policies, namespace_labels

__all__ = ["AUDIT_INDEXES", "AuditIndexes", "register_audit_indexes"]

logger = logging.getLogger(__name__)

AUDIT_INDEXES: Final = {resource.kind: f"image_gate_audit_{resource.plural}" for resource in JUDGED_RESOURCES}
"""The kopf index id of each audited kind (the webhook's table of kinds is the audit's)."""


@dataclass
class AuditIndexes:
    """kopf's audit indexes, kept from the first handler call that sees them (they are updated in place)."""

    indexes: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Kind -> its index of `AuditedObject` by uid."""
    policy_index: Mapping[str, Any] = field(default_factory=dict)
    namespace_index: Mapping[str, Any] = field(default_factory=dict)

    def attach(self, kwargs: Mapping[str, Any]) -> None:
        if self.indexes:
            return
        found = {kind: kwargs[index] for kind, index in AUDIT_INDEXES.items() if index in kwargs}
        if len(found) == len(AUDIT_INDEXES) and POLICIES_INDEX in kwargs and NAMESPACES_INDEX in kwargs:
            self.policy_index = kwargs[POLICIES_INDEX]
            self.namespace_index = kwargs[NAMESPACES_INDEX]
            self.indexes = found

    def policies(self) -> list[CompiledPolicy]:
        """The Ready policies (those that compiled), sorted by name."""
        return compiled_policies(self.policy_index)[0]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return namespace_labels(self.namespace_index, namespace)

    @property
    def attached(self) -> bool:
        return bool(self.indexes)

    def objects(self) -> list[AuditedObject]:
        """A snapshot of every audited object (a list of references: the pass then runs over a fixed set)."""
        snapshot: list[AuditedObject] = []
        for index in self.indexes.values():
            for store in list(index.values()):
                snapshot.extend(store)
        return snapshot

    def __len__(self) -> int:
        return sum(len(index) for index in self.indexes.values())


def _index_handler(resource: JudgedResource) -> Any:
    kind = resource.kind

    async def index_object(uid: str, body: kopf.Body, **_: Any) -> dict[str, AuditedObject]:
        # An empty mapping, not None: kopf keeps an object's previous value when a handler returns None.
        audited = audited_object(kind, body)
        return {uid: audited} if audited is not None and uid else {}

    return index_object


def register_audit_indexes(registry: kopf.OperatorRegistry, indexes: AuditIndexes) -> None:
    """One index per audited kind; ``indexes`` is given them at the first namespace event.

    Coroutines, not functions: kopf runs plain functions in a thread pool, a hop per pod event.
    """
    kopf_objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietIndexHandlers) for f in kopf_objects.filters):
        kopf_objects.addFilter(_QuietIndexHandlers())
    for resource in JUDGED_RESOURCES:
        kopf.index(
            resource.group,
            resource.version,
            resource.plural,
            id=AUDIT_INDEXES[resource.kind],
            registry=registry,
        )(_index_handler(resource))

    @kopf.on.event("", "v1", "namespaces", id="audit-index", registry=registry)
    async def attach(**kwargs: Any) -> None:
        # Every cluster has namespaces: this runs once every index is filled from its first listing.
        indexes.attach(kwargs)


class _QuietIndexHandlers(logging.Filter):
    """Drops kopf's "Handler ... succeeded." lines for the audit's handlers: one per pod event and replica
    would drown every other log line (as for the fact index, `image_gate.kube.factstore`), and one per
    policy event would follow every status.audit write."""

    _quiet = frozenset(
        f"Handler {handler_id!r} succeeded." for handler_id in (*AUDIT_INDEXES.values(), "audit-index", "audit-policy")
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._quiet
