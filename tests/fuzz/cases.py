"""How many generated cases each fuzz target runs, and how many it ran in this session.

`fuzz` is every target's hypothesis settings: no per-case deadline (on a shared machine it would time the
machine; the targets time what they mean to, themselves), random (not derandomised) so each run explores
new cases, and the health checks that a deliberately large or slow generator trips off. A target calls
`count` once per case it runs (shrinking replays included: they ran too); conftest.py prints the counts.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings

__all__ = ["CASES", "count", "fuzz"]

CASES: Counter[str] = Counter()


def count(target: str) -> None:
    CASES[target] += 1


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )
