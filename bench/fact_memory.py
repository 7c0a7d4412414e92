"""
How much memory 100,000 facts take in one replica: the ImageFact index kopf fills, and the caches.

Filling a running replica with 100,000 facts through its clouds would take HSS's quota for days,
and through the API server (100,000 ImageFacts) longer than the benchmark may run; so a process of
its own imports what ``image-gate run`` imports, then fills what a replica fills, through the code a
replica runs:

* **the index**: the initial listing of 100,000 ImageFacts (half HSS facts with a base image,
  half ACR facts with a digest), each a JSON text as the API server sends it (uid, labels,
  annotations, status), parsed with ``json.loads`` and fed to kopf's own ``watcher`` (its
  per-object workers, batching and idle timeout, with the kopf settings ``image-gate run`` uses),
  which hands them to ``process_resource_event`` with ``register_fact_store``'s handlers and the
  per-object memories ``image-gate run`` gives kopf: what kopf keeps per object (memories, index
  structures, a worker holding the body while it waits for more events) is in the figure;
* **the caches**: the leader resolving the same 100,000 images through a real `FactResolver`
  whose clouds answer from memory, each answer parsed from JSON by the clients' own functions
  (distinct image ids, digests and request ids; 50 base images shared by the HSS facts). The
  caches keep what their bound allows (``--cache-entries``, by default `CacheSettings`'s
  10,000 per cache, as the chart configures them): a replica whose store answers reads the index
  and never its caches, so only the leader's resolution (and the degraded in-process path) fills
  them. ``--cache-entries 100000`` measures caches that hold every fact as well.

The modules are those the container image installs: image-gate's runtime dependencies. The
development venv also holds the test extras, and kopf imports the ``kubernetes`` client whenever it
is importable (httpx its command line's ``rich`` and ``pygments`` too): 20 MiB a replica does not
have. They are hidden from this process, unless ``--with-test-packages``.

Prints one JSON object: RSS in MiB before any fact, with the index, and with the caches too, and
bytes per indexed fact and per cache entry. The index is above the chart's ``maxFacts`` (50,000),
so the figure is an upper bound.

On the development machine (2 cores shared with other work, Python 3.11, kopf 1.45)::

    $ python -m bench.fact_memory
    {"facts": 100000, "index": 100000, "cached": 40000, "cache_entries_bound": 10000,
     "rss_before_mib": 59.1, "rss_indexed_mib": 153.9, "rss_after_mib": 185.6,
     "index_bytes_per_fact": 993, "cache_bytes_per_entry": 833,
     "seconds": {"index": 120.1, "caches": 41.6}, "test_packages": false}
    $ python -m bench.fact_memory --with-test-packages
    {... "rss_before_mib": 79.4, "rss_indexed_mib": 174.2, "rss_after_mib": 205.8,
     "index_bytes_per_fact": 994, "cache_bytes_per_entry": 829, ..., "test_packages": true}

What each change bought (the index's bytes a fact: RSS over 100,000 facts):

=====================================================  =====================================
the code before (b535c85), this benchmark              3,597 B a fact: 401 MiB in all (the
                                                       caches fit in what kopf's workers
                                                       had freed)
the code before, events one by one (no workers), with  2,914 B: 395 MiB in all; 549 MiB with
the test packages                                      ``--cache-entries 100000``
kopf keeps no memory (~800 B) and no index entry       ~1,340 B
(~650 B) per ImageFact (kube.memos, kube.factstore)
StoredFact shares base images and repeated words       941 B
(facts.records)
kopf's workers leave 0.5 s after their event, not 5 s  through kopf's watcher, 20,000 facts:
(kube.factstore.settle_watch_workers)                  +77 MiB before, +26 MiB after;
                                                       100,000: 993 B a fact (above)
caches in one OrderedDict (facts.cache)                ~1,006 -> ~830-940 B an entry
=====================================================  =====================================

The high-water mark of kopf's workers depends on how fast the listing is processed, so the index
figure moves by a few MiB with the machine's load.

Run by ``bench.bench_load``, or alone:
``python -m bench.fact_memory [--facts N] [--cache-entries N] [--with-test-packages]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import re
import sys
from pathlib import Path

__all__ = ["hide_test_only_packages", "main", "rss_mib"]

_DISTRIBUTION = "image-gate"


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """These distributions and everything they require (extras aside), as far as they are installed."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(_requirement_name(r) for r in requirements if "extra ==" not in r)
    return seen


def test_only_modules() -> frozenset[str]:
    """Top-level modules of what image-gate's test extra installs and its runtime dependencies do not.

    What the image lacks: ``kubernetes`` (kopf imports it when importable), and ``rich`` and
    ``pygments`` (httpx imports its command line's modules when they are all there).
    """
    requirements = importlib.metadata.requires(_DISTRIBUTION) or []
    runtime = _closure({_requirement_name(r) for r in requirements if "extra ==" not in r})
    test_only = _closure({_requirement_name(r) for r in requirements if "extra ==" in r}) - runtime
    return frozenset(
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if any(_requirement_name(d) in test_only for d in distributions)
    )


def hide_test_only_packages() -> frozenset[str]:
    """Make this process import what a replica's image has: call it before anything imports kopf."""
    if "kopf" in sys.modules:
        raise RuntimeError("kopf is imported already: it has imported what it found")
    # Less what site's .pth files loaded at start-up (setuptools' _distutils_hack): a replica has them too.
    hidden = frozenset(module for module in test_only_modules() if module not in sys.modules)
    for module in hidden:
        sys.modules[module] = None  # type: ignore[assignment]  # the import system's "no such module"
    return hidden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument(
        "--cache-entries", type=int, help="the bound of each cache (default: CacheSettings', as the chart has it)"
    )
    parser.add_argument(
        "--with-test-packages", action="store_true", help="let kopf import the test extras' kubernetes client"
    )
    args = parser.parse_args()
    if not args.with_test_packages:
        hide_test_only_packages()
    from bench.fact_replica import measure  # the replica's modules: after the hiding

    figure = asyncio.run(measure(args.facts, args.cache_entries))
    figure["test_packages"] = bool(args.with_test_packages)
    print(json.dumps(figure))


if __name__ == "__main__":
    main()
