"""The load shedder: what one review costs, the queue ahead of a new one, and when to refuse it."""

from __future__ import annotations

import pytest

from image_gate.kube.overload import LoadShedder, NoLookups, parse_timeout


class Clocks:
    """A CPU clock and a wall clock that tests move by hand."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 100.0


def shedder(clocks: Clocks, lookups: NoLookups | None = None) -> LoadShedder:
    return LoadShedder(
        default_budget=3.0,
        lookups=lookups or NoLookups(),
        cpu_clock=lambda: clocks.cpu,
        clock=lambda: clocks.wall,
    )


def review_alone(shed: LoadShedder, clocks: Clocks, cpu: float, *, wall: float | None = None) -> None:
    shed.started()
    clocks.cpu += cpu
    clocks.wall += cpu if wall is None else wall
    shed.finished()


def test_nothing_is_refused_before_a_review_was_measured() -> None:
    shed = shedder(Clocks())
    for _ in range(10_000):
        shed.started()
    assert shed.refusal(1.0) is None


def test_a_review_alone_measures_the_cost_and_a_queue_past_the_budget_is_refused() -> None:
    clocks = Clocks()
    shed = shedder(clocks)
    review_alone(shed, clocks, 0.002)
    assert shed.seconds_per_review == pytest.approx(0.002)
    for _ in range(200):  # 200 x 2 ms = 0.4 s ahead: within 40 % of a 1 s timeout
        shed.started()
    assert shed.refusal(1.0) is None
    shed.started()
    refusal = shed.refusal(1.0)
    assert refusal is not None
    assert "over capacity" in refusal
    assert "201 reviews are ahead" in refusal
    assert shed.refusal(None) is None  # no timeout in the URL: the configured 3 s deadline


def test_reviews_waiting_for_facts_are_not_in_the_queue() -> None:
    clocks = Clocks()
    shed = shedder(clocks, NoLookups(waiting=1_000))
    review_alone(shed, clocks, 0.002)
    for _ in range(1_000):  # all waiting for a cold lookup: no CPU ahead of a new review
        shed.started()
    assert shed.refusal(1.0) is None


def test_a_burst_is_measured_once_it_turned_over_not_by_its_first_answers() -> None:
    """Reviews in flight share the CPU and finish together: the first few to finish did not cost it all."""
    clocks = Clocks()
    shed = shedder(clocks)
    review_alone(shed, clocks, 0.001)
    clocks.wall += 5  # a pause
    for _ in range(100):
        shed.started()
    clocks.cpu += 0.5
    clocks.wall += 0.5
    for _ in range(10):
        shed.finished()
    assert shed.seconds_per_review == pytest.approx(0.001)  # 0.5 s for 10 would say 50 ms
    for _ in range(82):  # 92 finished, 8 left: the burst has turned over
        shed.finished()
    assert shed.seconds_per_review == pytest.approx(0.7 * 0.001 + 0.3 * 0.5 / 92)


def test_a_shared_cpu_slows_reviews_down_and_the_estimate_with_them() -> None:
    clocks = Clocks()
    shed = shedder(clocks)
    review_alone(shed, clocks, 0.002, wall=0.004)  # another process had the core half the time
    assert shed.cpu_per_review == pytest.approx(0.002)
    assert shed.slowdown == pytest.approx(0.7 * 1 + 0.3 * 2)
    assert shed.seconds_per_review == pytest.approx(0.002 * 1.3)


def test_a_review_that_waited_for_a_lookup_says_nothing_about_the_slowdown() -> None:
    clocks = Clocks()
    lookups = NoLookups()
    shed = shedder(clocks, lookups)
    shed.started()
    lookups.waited += 1  # a cold lookup: a second of waiting, 3 ms of CPU
    clocks.cpu += 0.003
    clocks.wall += 1.0
    shed.finished()
    assert shed.cpu_per_review == pytest.approx(0.003)
    assert shed.slowdown == 1.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2.5s", 2.5),
        (None, None),
        ("", None),
        ("10", None),
        ("-1s", None),
        ("0s", None),
        ("10 s", None),
        ("1s" * 100, None),
    ],
)
def test_the_api_servers_timeout_is_read_as_a_go_duration(value: str | None, seconds: float | None) -> None:
    assert parse_timeout(value) == (pytest.approx(seconds) if seconds is not None else None)
