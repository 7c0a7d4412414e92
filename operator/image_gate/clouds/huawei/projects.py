"""
A region's project id, from IAM, when neither the registry mapping nor the credentials give one.

HSS's paths carry a project id. ``KeystoneListProjects`` (``GET /v3/projects?name=<region>``)
answers the project named after the region; the answer never changes for a
credential, so it is kept per (credential, region), and concurrent lookups of
the same key wait for one call instead of spending the quota several times.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from image_gate.clouds.huawei.answers import CLOUD, bad_answer
from image_gate.clouds.huawei.iam import iam_endpoint
from image_gate.clouds.pipeline import Answer, Identity
from image_gate.core.clock import Deadline
from image_gate.core.outcomes import LookupFailed, TimedOut, Unauthorized

__all__ = ["API_LIST_PROJECTS", "ProjectIds"]

API_LIST_PROJECTS = "KeystoneListProjects"

log = logging.getLogger(__name__)

GetJson = Callable[[str, str, Mapping[str, str], str, Identity, Deadline], Awaitable[Answer]]
"""``get(api, url, params, region, identity, deadline)``: one GET through the client's call pipeline."""


class ProjectIds:
    """Project ids by (credential fingerprint, region), found in IAM once each."""

    def __init__(self, get: GetJson, *, endpoint: str | None = None) -> None:
        self._get = get
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._found: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def project_id(self, region: str, identity: Identity, deadline: Deadline) -> str:
        """IAM's project named ``region`` for these credentials; raises `LookupFailed`."""
        key = (identity.fingerprint, region)
        cached = self._found.get(key)
        if cached:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with asyncio.timeout(deadline.remaining()):
                await lock.acquire()
        except TimeoutError:
            raise LookupFailed(
                TimedOut(cloud=CLOUD, api=API_LIST_PROJECTS, detail="no project id within the time left")
            ) from None
        try:
            cached = self._found.get(key)  # found by whoever held the lock
            if cached:
                return cached
            endpoint = self._endpoint or iam_endpoint(region)
            answer = await self._get(
                API_LIST_PROJECTS, f"{endpoint}/v3/projects", {"name": region}, region, identity, deadline
            )
            project_id = _project_from(answer, region)
            self._found[key] = project_id
            log.info("huawei: project id of %s for %s found in IAM", region, identity.fingerprint)
            return project_id
        finally:
            lock.release()


def _project_from(answer: Answer, region: str) -> str:
    projects = answer.body.get("projects")
    if not isinstance(projects, list) or not all(isinstance(p, Mapping) for p in projects):
        raise bad_answer(API_LIST_PROJECTS, "the answer has no projects array", answer)
    ids = [p.get("id") for p in projects if isinstance(p.get("id"), str) and p.get("id")]
    if not ids:
        raise LookupFailed(
            Unauthorized(
                cloud=CLOUD,
                api=API_LIST_PROJECTS,
                detail=f"IAM shows these credentials no project named {region}; "
                "grant iam:projects:list, or set projectId in the registry mapping",
                request_id=answer.request_id,
            )
        )
    if len(ids) > 1:
        raise bad_answer(
            API_LIST_PROJECTS,
            f"IAM has {len(ids)} projects named {region} ({', '.join(map(str, ids))}); "
            "set projectId in the registry mapping",
            answer,
        )
    return str(ids[0])
