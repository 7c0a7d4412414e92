"""
The audit's policy reports in the API server: one per namespace, written only when its content changed.

`image_gate.core.reports` builds the documents (one per namespace with
results); `ReportWriter` makes the cluster hold exactly those:

* at the first sync after this replica started leading it reads what is there
  (a LIST of the reports labelled ``app.kubernetes.io/managed-by:
  image-gate``, every namespace, in pages: once per leadership, never per
  pass), so a new leader neither rewrites unchanged reports nor forgets stale
  ones. What was last written or read is kept to compare with (about 7 MiB for
  25,000 results; comparing them costs 0.1 s of CPU a pass, hashing them 1.2 s);
* a report whose content (everything but metadata, and the results' own
  timestamps) equals what was last written or read is not written again;
* a changed one is replaced, guarded by the resourceVersion last seen (on a
  conflict it is read again and replaced once: the leader's pass is the
  newest judgement); a new one is created;
* a namespace that no longer has results (its workloads gone, the policy
  deleted) loses its report.

Two flavours: the policy WG's ``wgpolicyk8s.io/v1alpha2`` PolicyReport and
its successor, OpenReports' ``openreports.io/v1alpha1`` Report.
`served` asks discovery whether a flavour's CRD is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from image_gate.core.reports import MANAGED_BY, Flavour
from image_gate.kube.kubeapi import ApiError, KubeApi

__all__ = ["REPORT_KINDS", "ReportKind", "ReportWriter", "SyncCounts", "content_of", "served"]

logger = logging.getLogger(__name__)

_PAGE: Final = 20
_SELECTOR: Final = ",".join(f"{key}={value}" for key, value in MANAGED_BY.items())


@dataclass(frozen=True, slots=True)
class ReportKind:
    """Where one flavour of report lives in the API."""

    group: str
    version: str
    plural: str

    def collection(self, namespace: str | None = None) -> str:
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"/apis/{self.group}/{self.version}{where}/{self.plural}"


REPORT_KINDS: Final[dict[Flavour, ReportKind]] = {
    "wgpolicy": ReportKind("wgpolicyk8s.io", "v1alpha2", "policyreports"),
    "openreports": ReportKind("openreports.io", "v1alpha1", "reports"),
}


async def served(api: KubeApi, group: str, version: str, plural: str) -> bool:
    """Whether the API server serves ``plural`` in ``group/version`` (discovery, readable by everyone)."""
    try:
        answer = await api.request("GET", f"/apis/{group}/{version}")
    except ApiError as exc:
        if not exc.not_found:
            logger.warning("could not ask the API server whether it serves %s.%s: %s", plural, group, exc)
        return False
    resources = answer.get("resources")
    return isinstance(resources, list) and any(
        isinstance(resource, dict) and resource.get("name") == plural for resource in resources
    )


@dataclass(frozen=True, slots=True)
class SyncCounts:
    written: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class _Known:
    name: str
    content: Any
    resource_version: str


def content_of(report: Mapping[str, Any]) -> Any:
    """What a write would change: everything but metadata (its labels and annotations aside) and each result's
    timestamp (the time a result was first seen: a new leader's first pass would give new ones)."""
    content = {key: value for key, value in report.items() if key not in ("metadata", "apiVersion", "kind")}
    results = content.get("results")
    if isinstance(results, list):
        content["results"] = [
            {k: v for k, v in result.items() if k != "timestamp"} if isinstance(result, Mapping) else result
            for result in results
        ]
    metadata = report.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    content["labels"] = dict(metadata.get("labels") or {})
    content["annotations"] = dict(metadata.get("annotations") or {})
    return content


class ReportWriter:
    """Makes the cluster's image-gate reports of one flavour equal to the documents it is given."""

    def __init__(self, api: KubeApi, kind: ReportKind) -> None:
        self.kind = kind
        self._api = api
        self._known: dict[str, _Known] | None = None
        """Namespace -> the report there as last written or read; None until read at the first sync."""

    def forget(self) -> None:
        """Read the cluster again at the next sync (leadership lost: another replica may write meanwhile)."""
        self._known = None

    async def sync(self, reports: Mapping[str, Mapping[str, Any]]) -> SyncCounts:
        """Write what changed, create what is new, delete what has no results any more."""
        known = self._known if self._known is not None else await self._read()
        self._known = known
        written = unchanged = failed = deleted = 0
        for namespace, report in sorted(reports.items()):
            previous = known.get(namespace)
            content = content_of(report)
            if previous is not None and previous.content == content:
                unchanged += 1
                continue
            try:
                stored = await self._write(namespace, report, previous)
            except ApiError as exc:
                logger.warning("the policy report of namespace %s was not written: %s", namespace, exc)
                failed += 1
                continue
            known[namespace] = _Known(
                str(report["metadata"]["name"]), content, str(stored.get("metadata", {}).get("resourceVersion", ""))
            )
            written += 1
        for namespace in sorted(set(known) - set(reports)):
            gone = known[namespace]
            try:
                await self._api.request("DELETE", f"{self.kind.collection(namespace)}/{gone.name}")
            except ApiError as exc:
                if not exc.not_found:
                    logger.warning("the policy report of namespace %s was not deleted: %s", namespace, exc)
                    failed += 1
                    continue
            del known[namespace]
            deleted += 1
        return SyncCounts(written=written, deleted=deleted, unchanged=unchanged, failed=failed)

    async def _read(self) -> dict[str, _Known]:
        """Our reports in every namespace: a LIST by label, in pages (a report may hold 1,000 results)."""
        known: dict[str, _Known] = {}
        params = {"labelSelector": _SELECTOR, "limit": str(_PAGE)}
        while True:
            answer = await self._api.request("GET", self.kind.collection(), params=params)
            for item in answer.get("items") or []:
                metadata = item.get("metadata") or {}
                namespace, name = metadata.get("namespace"), metadata.get("name")
                if isinstance(namespace, str) and isinstance(name, str):
                    known[namespace] = _Known(name, content_of(item), str(metadata.get("resourceVersion", "")))
            following = (answer.get("metadata") or {}).get("continue")
            if not following:
                return known
            params = {**params, "continue": str(following)}

    async def _write(self, namespace: str, report: Mapping[str, Any], previous: _Known | None) -> dict[str, Any]:
        name = str(report["metadata"]["name"])
        path = f"{self.kind.collection(namespace)}/{name}"
        if previous is None or previous.name != name:
            try:
                return await self._api.request("POST", self.kind.collection(namespace), report)
            except ApiError as exc:
                if not exc.conflict:
                    raise
            version = await self._current_version(path)  # there already: written before we read, or by a peer
        else:
            version = previous.resource_version
        for attempt in range(2):
            body = {**report, "metadata": {**report["metadata"], "resourceVersion": version}}
            try:
                return await self._api.request("PUT", path, body)
            except ApiError as exc:
                if exc.not_found:
                    return await self._api.request("POST", self.kind.collection(namespace), report)
                if not exc.conflict or attempt:
                    raise
            version = await self._current_version(path)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _current_version(self, path: str) -> str:
        current = await self._api.request("GET", path)
        return str(current.get("metadata", {}).get("resourceVersion", ""))
