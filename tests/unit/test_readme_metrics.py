"""The README names every metric image-gate exports, with its labels, as Prometheus shows them."""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram

from image_gate.app.metrics import Metrics
from tests.chart.helm import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def exported() -> dict[str, tuple[str, ...]]:
    """Each metric of `Metrics` by the name a scrape shows (a counter's with ``_total``) -> its labels."""
    metrics = Metrics()
    found: dict[str, tuple[str, ...]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, Counter | Gauge | Histogram):
            suffix = "_total" if isinstance(metric, Counter) else ""
            found[metric._name + suffix] = tuple(metric._labelnames)
    return found


def documented() -> dict[str, set[tuple[str, ...]]]:
    """Each `` `image_gate_...{labels}` `` the README names -> the labels of each mention (prose may leave them out)."""
    mentions: dict[str, set[tuple[str, ...]]] = {}
    for name, labels in re.findall(r"`(image_gate_[a-z_]+)(?:\{([a-z_,]+)\})?`", README):
        mentions.setdefault(name, set()).add(tuple(labels.split(",")) if labels else ())
    return mentions


def test_the_metrics_are_many() -> None:
    """A guard on the test itself: the walk over `Metrics` finds the counters, gauges and histograms."""
    assert {"image_gate_admission_requests_total", "image_gate_leader", "image_gate_audit_pass_seconds"} <= set(
        exported()
    )


def test_the_readme_names_every_metric_with_its_labels() -> None:
    """Once at least with all its labels (the metrics lists), and never with labels it does not have."""
    readme = documented()
    missing = sorted(name for name in exported() if name not in readme)
    assert not missing, f"README.md does not name the metrics {missing}"
    wrong = {
        name: sorted(readme[name])
        for name, labels in exported().items()
        if labels not in readme[name] or any(written not in {(), labels} for written in readme[name])
    }
    assert not wrong, f"README.md gives these metrics other labels than the code has: {wrong}"


def test_the_readme_names_no_metric_that_is_gone() -> None:
    gone = sorted(set(documented()) - set(exported()))
    assert not gone, f"README.md names metrics image-gate does not export: {gone}"
