"""Readiness follows the watches: a policy or namespace watch silent past a bookmark interval is not ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import watching
from kopf._cogs.structs import references

from image_gate.kube.readiness import Readiness
from image_gate.kube.watchhealth import SILENT_AFTER, WatchHealth
from tests.faketime import FakeTime

WATCHES = {"imagegatepolicies", "namespaces"}


def ready(watches: WatchHealth) -> Readiness:
    readiness = Readiness(watches)
    readiness.indexes.set()
    readiness.webhook_listening = True
    return readiness


def test_a_watch_silent_for_longer_than_bookmarks_allow_makes_the_replica_unready() -> None:
    time = FakeTime()
    watches = WatchHealth(WATCHES, clock=time)
    readiness = ready(watches)
    watches.heard("imagegatepolicies")
    watches.heard("namespaces")
    assert readiness.ready
    time.now += SILENT_AFTER - 1
    watches.heard("namespaces")  # a bookmark
    assert readiness.ready
    time.now += 2
    assert not readiness.ready
    assert readiness.reason() == (
        "the imagegatepolicies watch has heard nothing from the API server for 151s "
        "(no event and no bookmark): the index may be stale"
    )
    watches.heard("imagegatepolicies")  # kopf reconnected and listed again
    assert readiness.ready


def test_other_watches_do_not_count() -> None:
    time = FakeTime()
    watches = WatchHealth(WATCHES, clock=time)
    watches.heard("imagefacts")
    time.now += SILENT_AFTER * 2
    assert watches.problem() is None


@pytest.fixture
def kopf_stream(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """kopf's watch stream, standing in for the API server: yields what the test puts in the list."""
    items: list[Any] = []

    async def infinite_watch(*, resource: references.Resource, **_: Any) -> AsyncIterator[Any]:
        for item in items:
            yield item

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)
    return items


async def test_installed_it_hears_every_item_of_kopfs_watch_streams_bookmarks_included(kopf_stream: list[Any]) -> None:
    time = FakeTime()
    watches = WatchHealth(WATCHES, clock=time)
    watches.install()
    try:
        namespaces = references.Resource("", "v1", "namespaces")
        kopf_stream.extend([{"type": None, "object": {}}, watching.Bookmark.LISTED, {"type": "BOOKMARK", "object": {}}])
        seen = []
        async for item in watching.infinite_watch(settings=None, resource=namespaces, namespace=None):  # type: ignore[arg-type]
            seen.append(item)
            assert watches._last["namespaces"] == time.now
            time.now += SILENT_AFTER + 1
        assert seen == kopf_stream
        assert watches.problem() is not None  # and nothing since the last item
    finally:
        watches.uninstall()
    assert watching.infinite_watch.__name__ == "infinite_watch"
