"""
``image-gate check --from-cluster``: the cluster's ImageFacts first, the clouds for the rest.

A check in CI should see what admission would: the facts the cluster already
holds (what the leader resolved, not-found answers included) answer first;
only what the cluster does not know, or knows no longer, is asked of the
clouds directly, as a plain ``check`` does. The check writes nothing: it lists
the ImageFacts once with the kubeconfig's credentials (a command line tool may
LIST; the webhook never does) and serves them through the same `SharedFacts`
as the webhook, over a read-only store, so a fact reads exactly as it would in
admission.
"""

from __future__ import annotations

from collections.abc import Iterator

from image_gate.facts.records import API_GROUP, API_VERSION, FACT_PLURAL, FactKey, FactRecord, StoredFact, stored_fact
from image_gate.facts.store import StoreUnavailable, WriteResult
from image_gate.kube.kubeapi import KubeApi

__all__ = ["ListedFacts", "list_cluster_facts"]


class ListedFacts:
    """A `FactStoreBackend` over one listing: reads only; asking for a fact falls back to the clouds."""

    def __init__(self, facts: dict[str, StoredFact]) -> None:
        self._facts = facts

    def __len__(self) -> int:
        return len(self._facts)

    def lookup(self, name: str) -> StoredFact | None:
        return self._facts.get(name)

    def stored(self) -> Iterator[StoredFact]:
        return iter(self._facts.values())

    async def request(self, key: FactKey, *, namespace: str, existing: StoredFact | None) -> None:
        raise StoreUnavailable("image-gate check writes nothing: the cluster does not know this fact")

    async def write(self, key: FactKey, record: FactRecord, *, previous: StoredFact | None) -> WriteResult:
        raise StoreUnavailable("image-gate check writes nothing")

    def count(self) -> int:
        return len(self._facts)

    async def mark_used(self, name: str, at: float) -> None:
        pass  # a check is not a use: nothing is recorded

    async def delete(self, stored: StoredFact) -> bool:
        return False

    async def warn(self, reason: str, message: str) -> None:
        pass


async def list_cluster_facts(api: KubeApi) -> ListedFacts:
    """Every ImageFact of the cluster (`image_gate.kube.kubeapi.ApiError` when it cannot be listed)."""
    answer = await api.request("GET", f"/apis/{API_GROUP}/{API_VERSION}/{FACT_PLURAL}")
    facts = {}
    for item in answer.get("items") or []:
        if isinstance(item, dict):
            stored = stored_fact(item)
            facts[stored.name] = stored
    return ListedFacts(facts)
