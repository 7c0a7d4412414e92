"""What every review records is added up off prometheus_client's locks, and all of it shows on the page."""

from __future__ import annotations

from image_gate.app.metrics import Metrics
from image_gate.core.evaluate import Decision


def test_reviews_and_cache_hits_show_on_the_page_however_many() -> None:
    metrics = Metrics()
    decision = Decision(allowed=True, policies=("p",), mode="Enforce")
    for _ in range(10_000):
        metrics.admission(kind="Pod", decision=decision, dry_run=False, seconds=0.0004)
        metrics.hit(cache="hss_image", negative=False)
    page = metrics.render().decode()
    assert (
        'image_gate_admission_requests_total{decision="allowed",dry_run="false",kind="Pod",mode="Enforce"} 10000.0'
        in page
    )
    assert 'image_gate_admission_review_duration_seconds_count{kind="Pod"} 10000.0' in page
    assert 'image_gate_admission_review_duration_seconds_bucket{kind="Pod",le="0.0005"} 10000.0' in page
    assert 'image_gate_cache_requests_total{cache="hss_image",result="hit"} 10000.0' in page


def test_durations_nobody_scrapes_are_handed_over_in_bounded_batches() -> None:
    metrics = Metrics()
    decision = Decision(allowed=True)
    for _ in range(10_000):
        metrics.admission(kind="Pod", decision=decision, dry_run=False, seconds=0.01)
    assert sum(len(seconds) for seconds in metrics._pending_seconds.values()) < 4096
