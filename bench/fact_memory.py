"""
How much memory 100,000 facts take in one replica: the ImageFact index kopf fills, and the caches.

Filling a running replica with 100,000 facts through its clouds would take HSS's quota for days,
and through the API server (100,000 ImageFacts) longer than the benchmark may run; so a process of
its own imports what ``image-gate run`` imports, then fills what a replica fills, through the code a
replica runs:

* **the index**: 100,000 ImageFact watch events (half HSS facts with a base image, half ACR facts
  with a digest), each a JSON text as the API server sends it (uid, labels, annotations, status),
  parsed with ``json.loads`` and handed to kopf's own ``process_resource_event`` with the handlers
  ``register_fact_store`` registers and the per-object memories ``image-gate run`` gives kopf: what
  kopf keeps per object (its memories, its index structures) is in the figure, not only ours;
* **the caches**: the leader resolving the same 100,000 images through a real `FactResolver`
  whose clouds answer from memory, each answer parsed from JSON by the clients' own functions
  (distinct image ids, digests and request ids; 50 base images shared by the HSS facts). The
  caches keep what their bound allows (``--cache-entries``, by default `CacheSettings`'s
  10,000 per cache, as the chart configures them): a replica whose store answers reads the index
  and never its caches, so only the leader's resolution (and the degraded in-process path) fills
  them. ``--cache-entries 100000`` measures caches that hold every fact as well.

The modules are those the container image installs: image-gate's runtime dependencies. The
development venv also holds the test extras, and kopf imports the ``kubernetes`` client whenever it
is importable (about 32 MiB a replica does not have): they are hidden from this process, unless
``--with-test-packages``.

Prints one JSON object: RSS in MiB before any fact, with the index, and with the caches too, and
bytes per indexed fact and per cache entry. The index is above the chart's ``maxFacts`` (50,000),
so the figure is an upper bound.

On the development machine (2 cores, Python 3.11, kopf 1.45), ``python -m bench.fact_memory``::

    (filled in below)

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
