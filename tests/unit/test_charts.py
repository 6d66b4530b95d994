"""Charts drawn from small synthetic runs whose content is known by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lab import charts
from lab.analysis import queueing
from lab.runs import CHARTS_DIR, Run
from tests.unit.test_kpi import T0, events_frame, task, tasks_frame

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def line(ax: Axes, label: str) -> Line2D:
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, [ln.get_label() for ln in ax.get_lines()]
    return found[0]


def xs(ln: Line2D) -> list[float]:
    values: list[float] = np.asarray(ln.get_xdata(), dtype="float64").tolist()
    return values


def ys(ln: Line2D) -> list[float]:
    values: list[float] = np.asarray(ln.get_ydata(), dtype="float64").tolist()
    return values


def bars(ax: Axes, label: str) -> list[tuple[float, float, float]]:
    """(row, left, width) of every bar in the container with that label, rounded to µs-scale noise."""
    containers = [c for c in ax.containers if isinstance(c, BarContainer) and c.get_label() == label]
    assert len(containers) == 1
    return sorted(
        (round(p.get_y() + p.get_height() / 2, 6), round(p.get_x(), 6), round(p.get_width(), 6))
        for p in containers[0].patches
    )


def texts(figure: Figure) -> list[str]:
    return [t.get_text() for ax in figure.axes for t in ax.texts]


def stamp(seconds: float | None) -> int | None:
    return None if seconds is None else T0 + int(seconds * 1000)


def timed_task(
    task_id: str,
    submitted: float,
    assigned: float | None,
    finished: float | None,
    *,
    delivered: float | None = None,
    attempt: int = 1,
    outcome: str = "answered",
) -> dict[str, Any]:
    """A task whose stamps are given in seconds from T0."""
    return {
        "task_id": task_id,
        "submitted": stamp(submitted),
        "assigned": stamp(assigned),
        "started": stamp(assigned),
        "finished": stamp(finished),
        "delivered": stamp(delivered if delivered is not None else finished),
        "worker_id": "w1",
        "attempt": attempt,
        "outcome": outcome if finished is not None else "",
    }


def queueing_run(params: dict[str, Any]) -> Run:
    # Waits 1, 3, 1, 3 s (mean 2) and services 8, 12, 8, 12 s (mean 10, sample variance 16/3).
    rows = [
        timed_task(f"t{i}", 20.0 * i, 20.0 * i + wait, 20.0 * i + wait + service)
        for i, (wait, service) in enumerate([(1, 8), (3, 12), (1, 8), (3, 12)])
    ]
    return Run("r-queue", params, {}, tasks_frame(rows), events_frame([]))


def test_throughput_counts_submitted_and_answered_tasks_in_each_second() -> None:
    # Delivered at 2.0, 2.8 and 5.0 s; submitted at 0, 0.5 and 1 s.
    frame = tasks_frame([task("t1", 0, 2), task("t2", 0.5, 2.3), task("t3", 1, 4)])
    ax = charts.throughput(frame, workers=6).axes[0]
    assert ys(line(ax, "answered")) == [0, 0, 2, 0, 0, 1]
    assert ys(line(ax, "submitted")) == [2, 1, 0, 0, 0, 0]
    assert xs(line(ax, "answered")) == [0, 1, 2, 3, 4, 5]
    rolling = ys(line(ax, f"answered, {charts.ROLLING_S} s mean"))
    assert rolling[-1] == pytest.approx(3 / 6)  # fewer than 10 s so far: the mean of what there is
    assert ys(line(ax, "KPI 6 tasks/min = 0.1/s")) == [pytest.approx(0.1)] * 2  # in the axis' unit


def test_latency_cdf_steps_through_the_sorted_latencies_to_one() -> None:
    frame = tasks_frame([task("t1", 0, 12), task("t2", 1, 3), task("t3", 2, 7.5), task("t4", 3, 99, outcome="failed")])
    ax = charts.latency_cdf({"six workers": frame, "again": frame}).axes[0]
    cdf = line(ax, "six workers (n=3)")
    assert xs(cdf) == pytest.approx([3000, 7500, 12_000])  # ms
    assert ys(cdf) == pytest.approx([100 / 3, 200 / 3, 100])  # percent
    assert len([ln for ln in ax.get_lines() if str(ln.get_label()).endswith("(n=3)")]) == 2
    assert xs(line(ax, "target 15 000 ms")) == [15_000, 15_000]
    assert "p50 7500 ms" in texts(ax.figure)  # type: ignore[arg-type]


def test_latency_vs_load_sorts_runs_by_the_parameter() -> None:
    slow = Run(
        "slow", {"target_utilization": 0.8}, {}, tasks_frame([task("a", 0, 20), task("b", 1, 10)]), events_frame([])
    )
    fast = Run("fast", {"target_utilization": 0.5}, {}, tasks_frame([task("c", 0, 4)]), events_frame([]))
    unknown = Run("unknown", {}, {}, tasks_frame([task("d", 0, 50)]), events_frame([]))
    ax = charts.latency_vs_load([slow, fast, unknown]).axes[0]
    p50 = line(ax, "p50")
    assert xs(p50) == [50, 80]  # percent
    assert ys(p50) == pytest.approx([4000, 15_000])  # ms
    assert ys(line(ax, "target 15 000 ms")) == [15_000, 15_000]
    assert ax.get_title(loc="right") == "runs slow, fast"  # the runs drawn, not the one without the parameter


def test_utilization_timeline_has_one_bar_per_busy_span_and_the_offline_gap() -> None:
    events = events_frame(
        [
            (0, "a", "idle", "grpc"),
            (1, "b", "busy", "grpc"),
            (2, "a", "busy", "grpc"),
            (4, "b", "idle", "grpc"),
            (5, "a", "idle", "grpc"),
            (6, "a", "busy", "grpc"),
            (7, "a", "busy", "grpc"),  # its next task: the same busy span goes on
            (9, "a", "offline", "grpc"),
            (12, "a", "online", "grpc"),
            (12.5, "a", "idle", "grpc"),
            (3, "b", "busy", "mqtt"),  # the workers' own view is not used when the master's is there
        ]
    )
    gantt, lower = charts.utilization_timeline(events).axes
    # Rows: a = 0, b = 1; time zero is the first event.
    assert bars(gantt, "busy") == [(0, 2, 3), (0, 6, 3), (1, 1, 3)]
    assert bars(gantt, "offline") == [(0, 9, 3)]
    fraction = line(lower, "busy / online")
    assert xs(fraction) == pytest.approx([0, 1, 2, 4, 5, 6, 7, 9, 12, 12.5])
    assert ys(fraction) == pytest.approx([0, 50, 100, 50, 0, 50, 50, 0, 0, 0])  # percent


def test_utilization_timeline_counts_time_from_the_first_submission() -> None:
    events = events_frame([(2, "a", "busy", "grpc"), (4, "a", "idle", "grpc")])
    tasks = tasks_frame([timed_task("t1", 1, 2, 4)])
    gantt = charts.utilization_timeline(events, tasks).axes[0]
    assert bars(gantt, "busy") == [(0, 1, 2)]


def test_queue_depth_counts_waiting_and_in_service_tasks() -> None:
    frame = tasks_frame(
        [
            timed_task("t1", 0, 1, 5),
            timed_task("t2", 0.5, 5, 9),  # assigned the instant t1 finishes: in service stays at 1
            timed_task("t3", 2, None, None),  # never assigned: waits to the end
            {**timed_task("t4", 3, None, None), "submitted": None},  # no submission: left out
        ]
    )
    ax = charts.queue_depth(frame).axes[0]
    waiting = line(ax, "waiting")
    assert xs(waiting) == pytest.approx([0, 0, 0.5, 1, 2, 5, 9])
    assert ys(waiting) == [0, 1, 2, 1, 2, 1, 0]
    assert max(ys(line(ax, "in service"))) == 1


def test_queue_depth_waits_until_the_first_assignment_of_a_retried_task() -> None:
    frame = tasks_frame([timed_task("t1", 0, 2, None), {**timed_task("t1", 0, 6, 8), "attempt": 2}])
    waiting = line(charts.queue_depth(frame).axes[0], "waiting")
    assert xs(waiting) == pytest.approx([0, 0, 2])
    assert ys(waiting) == [0, 1, 0]


def test_wait_prediction_matches_erlang_c_by_hand() -> None:
    result = charts.wait_prediction(queueing_run({"workers": 2, "rate_per_s": 0.1}))
    # c = 2, a = λ·E[S] = 1 Erlang: C = (a²/2 · 1/(1 - rho)) / (1 + a + a²/2 · 1/(1 - rho)) = 1/3,
    # Wq = C / (cμ - λ) = (1/3) / (0.2 - 0.1) = 10/3 s.
    cv2 = (16 / 3) / 100
    assert result == pytest.approx(
        {
            "measured_mean_wait_s": 2.0,
            "mmc_mean_wait_s": 10 / 3,
            "mgc_mean_wait_s": 10 / 3 * (1 + cv2) / 2,
            "utilization": 0.5,
            "service_mean_s": 10.0,
            "service_cv2": cv2,
        }
    )


def test_wait_prediction_has_no_prediction_for_an_unstable_load() -> None:
    result = charts.wait_prediction(queueing_run({"workers": 2, "rate_per_s": 0.25}))
    assert result["utilization"] == pytest.approx(1.25)
    assert math.isnan(result["mmc_mean_wait_s"]) and math.isnan(result["mgc_mean_wait_s"])


def test_wait_prediction_needs_the_offered_rate() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        charts.wait_prediction(queueing_run({"workers": 2, "target_utilization": 0.5}))


def test_wait_vs_prediction_places_each_run_at_its_utilization_under_the_curves() -> None:
    ax = charts.wait_vs_prediction([queueing_run({"workers": 2, "rate_per_s": 0.1})]).axes[0]
    measured = line(ax, "2 measured")
    assert xs(measured) == pytest.approx([50])  # percent
    assert ys(measured) == pytest.approx([2000])  # ms
    curve = line(ax, "2 M/M/c")
    percent, wait_ms = xs(curve)[-1], ys(curve)[-1]
    assert percent < 100
    assert wait_ms == pytest.approx(1000 * queueing.mmc(percent / 100 * 2 / 10, 10, 2).mean_wait_s)
    assert len(xs(line(ax, "2 M/G/c, cv² 0.05"))) == len(xs(curve))


def test_scaling_draws_measured_throughput_and_the_ideal_capacity() -> None:
    run = queueing_run({"workers": 2, "rate_per_s": 0.1, "duration_s": 60})
    ax = charts.scaling([run]).axes[0]
    assert xs(line(ax, "measured")) == [2]
    # 4 answered over the 75 s window from the first question to the last answer.
    assert ys(line(ax, "measured")) == pytest.approx([3.2])
    ideal = line(ax, "ideal: workers x 60 / 10.0 s")
    assert ys(ideal) == pytest.approx([0.0, 18.0])  # 3 workers x 6 tasks/min
    assert ys(line(ax, "offered")) == pytest.approx([6.0])


def test_fault_timeline_colours_retried_and_marks_failures_faults_and_offline_workers() -> None:
    tasks = tasks_frame(
        [
            timed_task("t1", 0, 1, 4),
            timed_task("t2", 1, 6, 10, attempt=2),
            timed_task("t3", 2, 3, 5, outcome="failed"),
            timed_task("t4", 3, 3.5, None),
        ]
    )
    events = events_frame([(5, "a", "offline", "grpc"), (5.5, "b", "idle", "grpc")])
    faults = [{"timestamp": T0 + 5000, "action": "kill worker", "target": "worker-a"}]
    ax = charts.fault_timeline(tasks, events, faults).axes[0]
    collections = {str(c.get_label()): c for c in ax.collections}
    assert {"first attempt", "retried", "never finished"} <= collections.keys()
    retried = collections["retried"].get_segments()  # type: ignore[attr-defined]
    assert [list(map(list, s)) for s in retried] == [[[1, 1], [10, 1]]]
    unfinished = collections["never finished"].get_segments()  # type: ignore[attr-defined]
    assert [list(map(list, s)) for s in unfinished] == [[[3, 3], [10, 3]]]  # grey to the end of the chart
    assert xs(line(ax, "failed")) == [5]
    assert xs(line(ax, "worker offline")) == [5]
    assert " kill worker worker-a" in texts(ax.figure)  # type: ignore[arg-type]


def test_empty_frames_give_charts_with_a_no_data_note() -> None:
    tasks, events = tasks_frame([]), events_frame([])
    empty = Run("empty", {"workers": 1, "rate_per_s": 1.0}, {}, tasks, events)
    figures = [
        charts.throughput(tasks),
        charts.latency_cdf(tasks),
        charts.latency_vs_load([empty]),
        charts.utilization_timeline(events, tasks),
        charts.queue_depth(tasks),
        charts.scaling([empty]),
        charts.fault_timeline(tasks, events),
        charts.wait_vs_prediction([empty]),
    ]
    for figure in figures:
        assert isinstance(figure, Figure)
        assert "no data" in texts(figure)
        figure.savefig(Path("/dev/null"), format="png")  # drawing must not raise either


def test_a_task_without_a_submission_is_left_out_of_every_chart() -> None:
    tasks = tasks_frame([{**timed_task("t1", 0, None, None), "submitted": None}])
    for figure in (charts.throughput(tasks), charts.queue_depth(tasks), charts.fault_timeline(tasks, events_frame([]))):
        assert "no data" in texts(figure)


def test_save_charts_writes_png_files_and_the_fault_chart_only_with_faults(tmp_path: Path) -> None:
    run = queueing_run({"workers": 2, "rate_per_s": 0.1})
    run.worker_events = events_frame([(1, "w1", "busy", "grpc"), (9, "w1", "idle", "grpc")])
    paths = charts.save_charts(run, tmp_path / "charts")
    assert [p.name for p in paths] == [
        "throughput.png",
        "latency_cdf.png",
        "utilization_timeline.png",
        "queue_depth.png",
    ]
    for path in paths:
        assert path.read_bytes().startswith(PNG_MAGIC)
    run.params["faults"] = [{"timestamp": T0 + 30_000, "action": "kill worker", "target": "w1"}]
    paths = charts.save_charts(run, tmp_path / "charts")
    assert (tmp_path / "charts" / "fault_timeline.png").read_bytes().startswith(PNG_MAGIC)
    assert len(paths) == 5
    del run.params["faults"]
    charts.save_charts(run, tmp_path / "charts")
    assert not (tmp_path / "charts" / "fault_timeline.png").exists()


def test_saving_a_run_with_save_run_writes_its_charts_and_run_save_writes_none(tmp_path: Path) -> None:
    run = queueing_run({"workers": 2, "rate_per_s": 0.1})
    folder = charts.save_run(run, tmp_path)
    written = sorted(p.name for p in (folder / CHARTS_DIR).glob("*.png"))
    assert written == ["latency_cdf.png", "queue_depth.png", "throughput.png", "utilization_timeline.png"]
    assert all((folder / CHARTS_DIR / name).read_bytes().startswith(PNG_MAGIC) for name in written)
    other = Run("r-no-charts", run.params, {}, run.tasks, run.worker_events)
    assert not (other.save(tmp_path) / CHARTS_DIR).exists()
