"""
``status.audit`` of each ImageGatePolicy: written when what it says changed, and re-stamped now and then.

`image_gate.core.reports.policy_audit_status` builds the value (lastPass,
totalViolations, the first 20 violations). Writing it after every pass would
be one write per policy every ten minutes for nothing, and an event to every
watcher of policies. So `PolicyStatusWriter` writes it (a merge patch of the
status subresource) only when:

* its content apart from ``lastPass`` differs from what was last written or
  read (one LIST of the policies when this replica starts leading), or
* the ``lastPass`` in the cluster is older than ``refresh_after`` (an hour by
  default).

So ``lastPass`` means: the audit was running then, and every pass since has
found what the status says. A ``lastPass`` much older than ``refresh_after``
plus the audit interval says the audit has stopped (no leader, or it lost its
permissions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from image_gate.core.clock import Clock
from image_gate.core.policy import API_GROUP, API_VERSION
from image_gate.kube.kubeapi import MERGE_PATCH, ApiError, KubeApi
from image_gate.kube.lease import from_micro_time

__all__ = ["STATUS_REFRESH", "PolicyStatusWriter", "StatusCounts"]

logger = logging.getLogger(__name__)

STATUS_REFRESH: Final = 3600.0
_COLLECTION: Final = f"/apis/{API_GROUP}/{API_VERSION}/imagegatepolicies"


@dataclass(frozen=True, slots=True)
class StatusCounts:
    written: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class _Known:
    content: Any
    last_pass: float | None


def _content(audit: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in audit.items() if key != "lastPass"}


class PolicyStatusWriter:
    """Writes ``status.audit`` of the policies a pass judged, when it changed or is due a new ``lastPass``."""

    def __init__(self, api: KubeApi, *, refresh_after: float = STATUS_REFRESH, wall: Clock = time.time) -> None:
        self._api = api
        self._refresh_after = refresh_after
        self._wall = wall
        self._known: dict[str, _Known] | None = None

    def forget(self) -> None:
        """Read the policies again at the next write (leadership lost: another replica may write meanwhile)."""
        self._known = None

    async def write(self, statuses: Mapping[str, Mapping[str, Any]]) -> StatusCounts:
        """``statuses``: policy name -> its ``status.audit``."""
        known = self._known if self._known is not None else await self._read()
        self._known = known
        for gone in set(known) - set(statuses):
            del known[gone]  # deleted (or no longer Ready): nothing to compare with any more
        now = self._wall()
        written = unchanged = failed = 0
        for name, audit in sorted(statuses.items()):
            content = _content(audit)
            previous = known.get(name)
            if (
                previous is not None
                and previous.content == content
                and previous.last_pass is not None
                and now - previous.last_pass < self._refresh_after
            ):
                unchanged += 1
                continue
            try:
                await self._api.request(
                    "PATCH",
                    f"{_COLLECTION}/{name}/status",
                    {"status": {"audit": dict(audit)}},
                    content_type=MERGE_PATCH,
                )
            except ApiError as exc:
                if not exc.not_found:  # deleted since the pass: its event brings the next pass
                    logger.warning("status.audit of policy %s was not written: %s", name, exc)
                    failed += 1
                continue
            known[name] = _Known(content, from_micro_time(audit.get("lastPass")) or now)
            written += 1
        return StatusCounts(written=written, unchanged=unchanged, failed=failed)

    async def _read(self) -> dict[str, _Known]:
        answer = await self._api.request("GET", _COLLECTION)
        known: dict[str, _Known] = {}
        for item in answer.get("items") or []:
            name = (item.get("metadata") or {}).get("name")
            audit = (item.get("status") or {}).get("audit")
            if isinstance(name, str) and isinstance(audit, Mapping):
                known[name] = _Known(_content(audit), from_micro_time(audit.get("lastPass")))
        return known
