"""Live stats of a load run: the accumulator the loops feed, and the three ways its snapshots are shown."""

from __future__ import annotations

import asyncio
import io
import math

import pytest

from lab.loadgen.live import LiveSnapshot, LiveStats
from lab.loadgen.live_monitor import LiveMonitor, choose_view, in_notebook
from lab.loadgen.live_notebook import NotebookView, chart_png, html_table
from lab.loadgen.live_text import COLUMNS, PlainView, TerminalView, cells, plain_line
from services.protocol import ScalingReport, StatusReport

pytestmark = pytest.mark.unit


def fed(started: float = 100.0) -> LiveStats:
    """Ten questions from t=0: eight answered (latencies 1..8 s, one a second from t=2), one refused."""
    stats = LiveStats("open loop", started, planned=20, duration_s=10.0)
    for _ in range(10):
        stats.on_sent()
    stats.on_failed()
    for i in range(8):
        stats.on_answered(started + 2 + i, latency_s=float(i + 1))
    return stats


def test_a_snapshot_counts_sent_answered_failed_and_in_flight() -> None:
    snap = fed().snapshot(110.0)
    assert (snap.sent, snap.answered, snap.failed, snap.in_flight) == (10, 8, 1, 1)
    assert snap.sent == snap.answered + snap.failed + snap.in_flight
    assert (snap.planned, snap.duration_s, snap.elapsed_s) == (20, 10.0, 10.0)


def test_latency_percentiles_are_those_of_every_answer_so_far() -> None:
    snap = fed().snapshot(110.0)
    assert snap.p50_s == pytest.approx(4.5)
    assert snap.p95_s == pytest.approx(7.65)
    assert snap.p99_s == pytest.approx(7.93)
    empty = LiveStats("closed loop", 0.0).snapshot(5.0)
    assert empty.p50_s is empty.p95_s is empty.p99_s is None


def test_the_recent_rate_counts_only_the_last_window_and_the_overall_rate_the_whole_run() -> None:
    stats = fed()  # answers at 102..109
    snap = stats.snapshot(110.0)
    assert snap.overall_per_s == pytest.approx(8 / 10)
    assert snap.recent_per_s == pytest.approx(8 / 10)  # the window is the 10 s so far
    later = stats.snapshot(115.0)  # window 105..115: answers at 105..109
    assert later.recent_per_s == pytest.approx(5 / 10)
    assert later.overall_per_s == pytest.approx(8 / 15)
    quiet = stats.snapshot(130.0)
    assert quiet.recent_per_s == 0.0 and quiet.answered == 8


def test_answers_fed_out_of_order_are_counted_in_their_window() -> None:
    stats = LiveStats("open loop", 0.0, recent_s=5.0)
    for at in (9.0, 3.0, 8.0, 1.0):  # polls find answers a little out of order
        stats.on_answered(at, 0.5)
    assert stats.snapshot(10.0).recent_per_s == pytest.approx(2 / 5)


def test_a_short_run_divides_by_the_time_it_ran_not_by_the_window() -> None:
    stats = LiveStats("open loop", 0.0)
    stats.on_sent()
    stats.on_answered(1.0, 1.0)
    assert stats.snapshot(2.0).recent_per_s == pytest.approx(0.5)
    assert stats.snapshot(0.0).recent_per_s == 0.0  # nothing ran yet: no division by zero


def status(queue: int, idle: int, busy: int, scaling: ScalingReport | None = None) -> StatusReport:
    """A master's /api/status with no worker listed, only the counts the live view reads."""
    return StatusReport(
        workers=[],
        idle=idle,
        busy=busy,
        offline=0,
        queue_length=queue,
        in_flight=busy,
        undelivered=0,
        mqtt_connected=True,
        scaling=scaling,
    )


def test_the_status_gives_the_queue_the_workers_and_the_autoscalers_last_decision() -> None:
    decision = ScalingReport(
        timestamp=1,
        current=2,
        target=4,
        direction="up",
        reason="the queue grew",
        queue_length=9,
        busy=2,
        idle=0,
        arrival_rate_per_s=0.5,
        service_time_s=10,
        utilization=0.75,
        predicted_wait_s=1.2,
    )
    stats = LiveStats("open loop", 0.0)
    stats.on_status(status(3, idle=1, busy=1))
    first = stats.snapshot(1.0)
    assert (first.queue, first.workers, first.scaling) == (3, 2, None)
    assert "workers 2" in plain_line(first) and "autoscaler" not in plain_line(first)
    stats.on_status(status(9, idle=0, busy=2, scaling=decision))
    stats.on_status(None)  # a failed read keeps the last ones
    second = stats.snapshot(2.0)
    assert (second.queue, second.workers, second.scaling) == (9, 2, decision)
    assert plain_line(second).endswith("autoscaler: 2 -> 4 workers (up): the queue grew")
    assert "autoscaler: 2 -&gt; 4 workers (up)" in html_table(second)  # escaped
    assert chart_png([first, second]).startswith(b"\x89PNG")


def test_the_queue_keeps_its_last_reading_when_a_read_fails() -> None:
    stats = LiveStats("open loop", 0.0)
    assert stats.snapshot(1.0).queue is None
    stats.on_queue(7)
    stats.on_queue(None)
    assert stats.snapshot(2.0).queue == 7


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="recent_s"):
        LiveStats("open loop", 0.0, recent_s=0)


def snapshot() -> LiveSnapshot:
    return fed().snapshot(110.0)


def test_cells_show_progress_against_the_plan_and_latencies_in_seconds() -> None:
    values = cells(snapshot())
    assert list(values) == list(COLUMNS)
    assert values["sent"] == "10/20"
    assert values["queue"] == "-"
    assert values["p50"] == "4.50 s"
    assert cells(LiveStats("closed loop", 0.0).snapshot(1.0))["sent"] == "0"


def test_a_plain_line_has_every_number_on_one_line() -> None:
    line = plain_line(snapshot())
    assert "\n" not in line
    assert line.startswith("[open loop · 10 s of 10 s] sent 10/20 · answered 8 · failed 1 · in flight 1 · queue -")
    assert "answers/s 0.8 (last 10 s) 0.8 (overall)" in line
    assert "latency p50 4.50 s p95 7.65 s p99 7.93 s" in line


def test_the_plain_view_prints_each_update_and_the_last_numbers_once() -> None:
    out = io.StringIO()
    view = PlainView(out)
    view.close()  # nothing shown yet: nothing to print
    view.update(snapshot())
    view.close()  # the last update was printed already
    assert out.getvalue().count("\n") == 1


def test_the_terminal_view_draws_a_table_with_every_column_and_leaves_the_last_frame() -> None:
    from rich.console import Console

    out = io.StringIO()
    view = TerminalView(Console(file=out, force_terminal=True, width=160, color_system=None))
    stats = fed()
    view.update(stats.snapshot(105.0))
    stats.on_queue(3)
    view.update(stats.snapshot(110.0))
    view.close()
    text = out.getvalue()
    for header in ("sent", "answered", "failed", "in flight", "queue", "answers/s", "p50", "p95", "p99"):
        assert header in text
    assert "open loop · 5 s of 10 s" in text and "open loop · 10 s of 10 s" in text
    assert "10/20" in text
    assert plain_line(stats.snapshot(112.0)).startswith("[open loop · 12 s, sending ended at 10 s] ")


def test_the_notebook_view_shows_a_table_and_a_chart_of_the_run_so_far() -> None:
    view = NotebookView(show=False)
    stats = fed()
    for now in (104.0, 106.0, 108.0, 110.0):
        view.update(stats.snapshot(now))
    assert len(view.history) == 4
    assert view.png.startswith(b"\x89PNG") and view.chart.value == view.png
    assert "10/20" in view.table.value and "<th" in view.table.value
    assert html_table(snapshot()).count("<td") == len(COLUMNS)


def test_a_chart_of_a_run_without_answers_yet_draws() -> None:
    empty = LiveStats("open loop", 0.0).snapshot(2.0)
    assert empty.p50_s is None and not math.isnan(empty.overall_per_s)
    assert chart_png([empty]).startswith(b"\x89PNG")


def test_outside_jupyter_the_view_follows_stderr() -> None:
    assert not in_notebook()
    assert isinstance(choose_view(), PlainView | TerminalView)


class Recorder:
    """A view that keeps what it was shown."""

    every_s = 0.05

    def __init__(self, fail: bool = False) -> None:
        self.shown: list[LiveSnapshot] = []
        self.fail = fail
        self.closed = False

    def update(self, snapshot: LiveSnapshot) -> None:
        if self.fail:
            raise RuntimeError("cannot draw")
        self.shown.append(snapshot)

    def close(self) -> None:
        self.closed = True


NOWHERE = "http://127.0.0.1:9"  # nothing listens: the queue stays unknown


async def test_the_monitor_shows_a_snapshot_at_once_every_few_moments_and_at_the_end() -> None:
    stats = LiveStats("open loop", 0.0)
    view = Recorder()
    async with LiveMonitor(stats, view, NOWHERE):
        await asyncio.sleep(0.01)
        assert len(view.shown) == 1  # at once
        stats.on_sent()
        await asyncio.sleep(0.2)
    ticks = len(view.shown)
    assert ticks >= 3
    assert view.shown[-1].sent == 1 and view.shown[-1].queue is None
    assert not view.closed  # closed by whoever made it


async def test_without_a_view_the_monitor_does_nothing_and_a_failing_view_does_not_fail_the_run() -> None:
    stats = LiveStats("open loop", 0.0)
    async with LiveMonitor(stats, None, NOWHERE) as monitor:
        await asyncio.sleep(0.1)
    assert monitor.view is None
    failing = Recorder(fail=True)
    async with LiveMonitor(stats, failing, NOWHERE) as monitor:
        await asyncio.sleep(0.1)
    assert monitor.view is None  # dropped after its first failure
