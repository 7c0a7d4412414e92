"""
Reading the cluster for ``image-gate audit``, and judging it as the leader's audit does.

One LIST of each judged kind (paged, 500 at a time; a command line tool may LIST, the webhook
never does), of the namespaces, of the ImageGatePolicies and of the ImageFacts, with the
kubeconfig's credentials. The judgement is `image_gate.core.audit.audit` over
`SharedFacts.known` on the listed facts, with a resolver that has no cloud client: nothing is
written and no cloud is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from image_gate.app.clusterfacts import ListedFacts, list_cluster_facts
from image_gate.app.settings import Settings
from image_gate.core.audit import AuditedObject, AuditPass, audit, audited_object
from image_gate.core.policy import API_GROUP, API_VERSION, CompiledPolicy, PolicyError
from image_gate.core.workloads import JUDGED_RESOURCES, JudgedResource
from image_gate.kube.controller import compile_or_error
from image_gate.kube.kubeapi import ApiError, KubeApi

__all__ = ["ClusterAudit", "ClusterUnreadable", "audit_cluster", "judge_cluster"]

_PAGE: Final = "500"
_POLICIES: Final = f"/apis/{API_GROUP}/{API_VERSION}/imagegatepolicies"


class ClusterUnreadable(Exception):
    """The cluster could not be read (no kubeconfig, unreachable, forbidden, no such namespace)."""


@dataclass(frozen=True, slots=True)
class ClusterAudit:
    """One pass over what runs, and what the reader should know besides its results."""

    judged: AuditPass
    objects: int
    """Objects judged (Pods and workloads outside the exempt namespaces)."""
    policies: tuple[CompiledPolicy, ...] = ()
    """The policies judged."""
    notes: tuple[str, ...] = ()
    """Policies that are not Ready, CRDs that are missing, ..."""


async def audit_cluster(
    settings: Settings, files: Sequence[CompiledPolicy] | None, *, namespace: str | None
) -> ClusterAudit:
    """Read the cluster the kubeconfig names once and judge it; `ClusterUnreadable` when it cannot be read."""
    api = KubeApi(timeout=30.0)
    try:
        return await judge_cluster(api, settings, files, namespace=namespace)
    except ApiError as exc:
        raise ClusterUnreadable(f"the cluster could not be read: {exc}") from None
    finally:
        await api.aclose()


async def judge_cluster(
    api: KubeApi, settings: Settings, files: Sequence[CompiledPolicy] | None, *, namespace: str | None
) -> ClusterAudit:
    """What runs (outside the exempt namespaces), judged against ``files`` or the cluster's Ready policies."""
    notes: list[str] = []
    policies = files if files is not None else await _cluster_policies(api, notes)
    labels = await _namespace_labels(api, namespace)
    objects = [
        obj
        for obj in await _objects(api, namespace)
        if obj.namespace not in settings.exempt_namespaces and obj.namespace in labels
    ]
    facts = await _facts(api, notes)
    judged = await _judge(settings, objects, policies, labels, facts)
    return ClusterAudit(judged, objects=len(objects), policies=tuple(policies), notes=tuple(notes))


async def _judge(
    settings: Settings,
    objects: Sequence[AuditedObject],
    policies: Sequence[CompiledPolicy],
    labels: Mapping[str, Mapping[str, str]],
    listed: ListedFacts,
) -> AuditPass:
    """The leader's audit over the listed facts: `SharedFacts.known` as the leader reads its index."""
    from image_gate.app.sharing import store_settings
    from image_gate.facts.resolver import FactResolver
    from image_gate.facts.shared import SharedFacts

    resolver = FactResolver(settings.registries, None, None)  # no clients: nothing can call a cloud
    facts = SharedFacts(resolver, listed, settings=store_settings(settings))
    try:
        return audit(objects, policies, lambda name: labels.get(name, {}), facts)
    finally:
        await facts.aclose()
        await resolver.aclose()


async def _cluster_policies(api: KubeApi, notes: list[str]) -> list[CompiledPolicy]:
    try:
        items = await _list(api, _POLICIES)
    except ApiError as exc:
        if exc.not_found:
            raise ClusterUnreadable(
                "the cluster serves no ImageGatePolicies (CRD not installed): give policy files with --policy"
            ) from None
        raise
    policies = []
    for item in items:
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name", "?"))
        generation = metadata.get("generation")
        compiled = compile_or_error(name, item.get("spec") or {}, generation if isinstance(generation, int) else None)
        if isinstance(compiled, PolicyError):
            notes.append(f"policy {name!r} is not Ready and is not judged: {'; '.join(compiled.problems)}")
        else:
            policies.append(compiled)
    if not policies:
        notes.append("the cluster has no Ready ImageGatePolicy: nothing is judged (give policy files with --policy)")
    return sorted(policies, key=lambda policy: policy.name)


async def _namespace_labels(api: KubeApi, namespace: str | None) -> dict[str, dict[str, str]]:
    if namespace is not None:
        try:
            items = [await api.request("GET", f"/api/v1/namespaces/{namespace}")]
        except ApiError as exc:
            if exc.not_found:
                raise ClusterUnreadable(f"namespace {namespace!r} does not exist") from None
            raise
    else:
        items = await _list(api, "/api/v1/namespaces")
    labels: dict[str, dict[str, str]] = {}
    for item in items:
        metadata = item.get("metadata") or {}
        if isinstance(metadata.get("name"), str):
            given = metadata.get("labels") or {}
            labels[metadata["name"]] = {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}
    return labels


async def _objects(api: KubeApi, namespace: str | None) -> list[AuditedObject]:
    objects: list[AuditedObject] = []
    for resource in JUDGED_RESOURCES:
        for item in await _list(api, _collection(resource, namespace)):
            obj = audited_object(resource.kind, item)
            if obj is not None:
                objects.append(obj)
    return objects


async def _facts(api: KubeApi, notes: list[str]) -> ListedFacts:
    try:
        return await list_cluster_facts(api)
    except ApiError as exc:
        if not exc.not_found:
            raise
        notes.append("the cluster serves no ImageFacts (CRD not installed): every fact is unresolved")
        return ListedFacts({})


def _collection(resource: JudgedResource, namespace: str | None) -> str:
    base = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    return f"{base}/namespaces/{namespace}/{resource.plural}" if namespace else f"{base}/{resource.plural}"


async def _list(api: KubeApi, path: str) -> list[dict[str, Any]]:
    """Every item of a collection, a page of 500 at a time (the ``continue`` token)."""
    items: list[dict[str, Any]] = []
    params = {"limit": _PAGE}
    while True:
        answer = await api.request("GET", path, params=params)
        items += [item for item in answer.get("items") or [] if isinstance(item, dict)]
        token = (answer.get("metadata") or {}).get("continue")
        if not token:
            return items
        params = {"limit": _PAGE, "continue": str(token)}
