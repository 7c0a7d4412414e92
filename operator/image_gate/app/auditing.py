"""
Wiring of the background audit: on when facts are shared through the cluster (ImageFacts and the Lease).

The audit needs the shared store (it judges with stored facts and asks the
leader's resolver for the missing ones) and the Lease (one replica writes
reports). With in-memory facts it stays off: every replica would audit and
write on its own.

It also needs to list and watch pods and the workload kinds. kopf would retry a
forbidden watch for ever, and since kopf calls no handler before every index is
filled, the replica would never become ready. So before registering its
indexes the audit asks the API server whether it may (SelfSubjectAccessReview,
allowed to every authenticated user); without the permission (a ClusterRole
from an older chart) the audit stays off, said once in the log, and admission
works as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import kopf

from image_gate.app.settings import Settings
from image_gate.app.sharing import FactSharing
from image_gate.core.admission import FactSource
from image_gate.core.workloads import JUDGED_RESOURCES
from image_gate.facts.shared import SharedFacts
from image_gate.kube.audit import Auditor, AuditSettings, register_audit_triggers
from image_gate.kube.audit_index import AuditIndexes, register_audit_indexes
from image_gate.kube.kubeapi import ApiError, KubeApi

__all__ = ["audit_settings", "auditing"]

logger = logging.getLogger(__name__)

_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def audit_settings(settings: Settings) -> AuditSettings:
    return AuditSettings(
        interval=settings.audit_interval,
        debounce=settings.audit_debounce,
        reports=settings.policy_reports,
        flavour=settings.report_flavour,
        exempt_namespaces=settings.exempt_namespaces,
    )


@asynccontextmanager
async def auditing(
    settings: Settings, registry: kopf.OperatorRegistry, sharing: FactSharing, facts: FactSource
) -> AsyncIterator[Auditor | None]:
    """The `Auditor`, its indexes and triggers registered, following the Lease; None when the audit is off."""
    store = sharing.store
    if not isinstance(facts, SharedFacts) or store is None:
        yield None
        return
    api = KubeApi()
    try:
        refused = await _refused_reads(api)
        if refused:
            logger.warning(
                "the background audit is off: this service account may not list and watch %s "
                "(the chart's ClusterRole grants it: upgrade the chart)",
                ", ".join(refused),
            )
            yield None
            return
        indexes = AuditIndexes()
        register_audit_indexes(registry, indexes)
        auditor = Auditor(api, indexes, facts, audit_settings(settings), observer=sharing.metrics)
        register_audit_triggers(registry, auditor)
        store.subscribe(auditor.fact_event)
        sharing.follow_leadership(lambda leading: auditor.start_leading() if leading else auditor.stop_leading())

        logger.info(
            "the leader audits what runs every %gs (and %gs after a policy or fact change); reports %s",
            settings.audit_interval,
            settings.audit_debounce,
            settings.report_flavour if settings.policy_reports else "off",
        )
        try:
            yield auditor
        finally:
            await auditor.aclose()
    finally:
        await api.aclose()


async def _refused_reads(api: KubeApi) -> list[str]:
    """The audited resources this identity may not list or watch (all of them when it cannot be asked)."""
    refused: list[str] = []
    for resource in JUDGED_RESOURCES:
        name = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        for verb in ("list", "watch"):
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"group": resource.group, "resource": resource.plural, "verb": verb}},
            }
            try:
                answer = await api.request("POST", _ACCESS_REVIEWS, review)
            except ApiError as exc:
                logger.warning("could not ask whether this service account may %s %s: %s", verb, name, exc)
                allowed = False
            else:
                allowed = (answer.get("status") or {}).get("allowed") is True
            if not allowed:
                refused.append(f"{name} ({verb})")
    return refused
