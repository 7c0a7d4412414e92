"""CPU time of one call, as the budgets of the fuzz targets mean it.

The thread's CPU time, not the wall clock: on a shared machine the wall clock measures the neighbours.
The garbage collector is held off during the call: a full collection of hypothesis's heap can take
longer than a budget, and it is not the code under test. A call over budget is measured again, up to
`ATTEMPTS` times, and its best time counts: a preemption or cache miss does not repeat, a backtracking
regex or matcher does (it is the same work every time).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["ATTEMPTS", "cpu_seconds"]

ATTEMPTS = 3


def cpu_seconds(call: Callable[[], object], *, budget: float) -> float:
    """The best CPU time of ``call`` over at most `ATTEMPTS` runs, stopping at the first within ``budget``."""
    best = float("inf")
    for _ in range(ATTEMPTS):
        enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.thread_time()
            call()
            best = min(best, time.thread_time() - started)
        finally:
            if enabled:
                gc.enable()
        if best < budget:
            break
    return best
