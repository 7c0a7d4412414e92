"""The fuzz campaign (issue 10, "Proof"): a marker, and a summary of the cases run per target.

Every test here is marked ``fuzz`` (``pytest -m fuzz`` runs the campaign alone); it has no ``e2e``
mark, so the ordinary ``pytest -m "not e2e"`` run of scripts/test.sh runs it too.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from tests.fuzz.cases import CASES

_HERE = Path(__file__).parent
_SECONDS: defaultdict[str, float] = defaultdict(float)
MINIMUM_CASES = 10_000
"""What the issue asks of one run of the whole campaign."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: the hypothesis fuzz campaign of tests/fuzz (runs in the ordinary run)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.fuzz)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = _HERE.parents[1] / report.nodeid.split("::", 1)[0]
    if _HERE in path.parents:
        _SECONDS[path.stem] += report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fuzz campaign")
    for target, cases in sorted(CASES.items()):
        write(f"{target:<40} {cases:>7} cases")
    total = sum(CASES.values())
    for module, seconds in sorted(_SECONDS.items()):
        write(f"{module:<40} {seconds:>7.1f} s")
    verdict = "" if total >= MINIMUM_CASES else f" (fewer than the {MINIMUM_CASES} a full run makes)"
    write(f"{'total':<40} {total:>7} cases in {sum(_SECONDS.values()):.1f} s{verdict}")
