"""kopf's per-object memory stays bounded however many UPDATE reviews of unknown objects arrive."""

from __future__ import annotations

import gc
import time
import uuid
from pathlib import Path
from typing import Any

from kopf._cogs.structs import ephemera
from kopf._core.reactor.inventory import ResourceMemories

from image_gate.core.admission import Admission
from image_gate.kube.memos import WatchedOnlyMemories
from tests.kopfwebhook import NoFacts, kopf_webhook_fn, operator_registry, pod, review


def update_of_a_new_object() -> Any:  # kopf's TypedDicts are stricter than JSON
    """An UPDATE that changes no image (judged in microseconds) of an object with a uid never seen before."""
    uid = str(uuid.uuid4())
    body = pod()
    body["metadata"]["uid"] = uid
    return review(body, operation="UPDATE", old=body, uid=uid)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_kopfs_own_memories_keep_one_memo_per_updated_uid() -> None:
    """Why `WatchedOnlyMemories` exists: if kopf ever frees these itself, this test says so."""
    memories = ResourceMemories()
    fn = kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=memories)
    for _ in range(500):
        assert (await fn(update_of_a_new_object(), webhook="pods"))["response"]["allowed"] is True
    assert len(list(memories.iter_all_memories())) == 500


async def test_reviews_through_kopf_leave_no_memo_behind() -> None:
    memories = WatchedOnlyMemories()
    fn = kopf_webhook_fn(operator_registry(Admission(NoFacts())), memories=memories)
    for _ in range(500):
        assert (await fn(update_of_a_new_object(), webhook="pods"))["response"]["allowed"] is True
    assert list(memories.iter_all_memories()) == []


async def test_a_watched_objects_memo_is_kept_and_shared() -> None:
    memories = WatchedOnlyMemories()
    namespace: Any = {"metadata": {"uid": "ns-1", "name": "shop"}}
    watched = await memories.recall(namespace)  # what kopf's watch does
    assert await memories.recall_memo(namespace, ephemeral=False) is watched.memo
    assert len(list(memories.iter_all_memories())) == 1


async def test_100000_updates_of_random_uids_leave_no_memo_and_flat_rss() -> None:
    """kopf's whole admission path costs milliseconds a review on a busy 2-core machine, so the
    100,000 go through the one call of it that kept memory (``serve_admission_request`` recalls
    the memo exactly so); the tests above run the whole path."""
    memories = WatchedOnlyMemories()
    memobase = ephemera.AnyMemo(ephemera.Memo())

    async def review_of_a_new_uid() -> None:
        request = update_of_a_new_object()["request"]
        await memories.recall_memo(request["object"], memobase=memobase, ephemeral=request["operation"] == "CREATE")

    for _ in range(10_000):  # warm-up: allocator arenas settle
        await review_of_a_new_uid()
    gc.collect()
    before, started = rss_bytes(), time.monotonic()
    for _ in range(100_000):
        await review_of_a_new_uid()
    gc.collect()
    growth = rss_bytes() - before
    print(f"100,000 UPDATE memo recalls in {time.monotonic() - started:.1f} s; RSS grew {growth / 1024:.0f} KiB")
    assert list(memories.iter_all_memories()) == []
    # kopf's own memories kept ~900 bytes per uid: ~86 MiB here. Allow allocator noise only.
    assert growth < 4 * 1024 * 1024
