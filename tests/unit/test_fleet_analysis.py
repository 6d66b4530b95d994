"""A fleet that changes size, from worker events and tasks: its size, load and latency over time, its cost and
how fast added workers took tasks."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from lab.analysis import fleet
from lab.runs import Run

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000  # ms


def events(*rows: tuple[float, str, str]) -> pd.DataFrame:
    """Worker events at seconds from T0, as the master reports them."""
    frame: pd.DataFrame = pd.DataFrame(
        [
            {"timestamp": T0 + int(t * 1000), "worker_id": w, "state": s, "task_id": "", "source": "grpc"}
            for t, w, s in rows
        ]
    )
    return frame


def tasks(*rows: tuple[str, float, float, float, str]) -> pd.DataFrame:
    """Tasks (id, submitted, started, delivered in seconds from T0, worker)."""
    frame: pd.DataFrame = pd.DataFrame(
        [
            {
                "task_id": i,
                "submitted": T0 + int(s * 1000),
                "assigned": T0 + int(st * 1000),
                "started": T0 + int(st * 1000),
                "finished": T0 + int(d * 1000),
                "delivered": T0 + int(d * 1000),
                "worker_id": w,
                "outcome": "answered",
            }
            for i, s, st, d, w in rows
        ]
    )
    return frame


# One worker all along, busy 0-10 s; a second joins at 10 s, busy 12-20 s, and leaves at 30 s. The run ends at
# 40 s (the last delivery).
EVENTS = events(
    (-5, "w1", "online"),
    (0, "w1", "busy"),
    (10, "w1", "idle"),
    (10, "w2", "online"),
    (12, "w2", "busy"),
    (20, "w2", "idle"),
    (30, "w2", "offline"),
)
TASKS = tasks(("a", 0, 0, 10, "w1"), ("b", 5, 12, 20, "w2"), ("c", 30, 30, 40, "w1"))


def test_the_timeline_counts_workers_and_busy_ones_per_bin() -> None:
    lines = fleet.timeline(TASKS, EVENTS, bin_s=10)
    assert lines["t_s"].tolist() == [0, 10, 20, 30]
    assert lines["workers"].tolist() == [1, 2, 2, 1]
    assert lines["busy"].tolist() == [1, 0.8, 0, 0]
    assert lines["utilization"].tolist() == [1, 0.4, 0, 0]
    assert lines["arrivals_per_s"].tolist() == [0.2, 0, 0, 0.1]
    # Latency by submission bin: a (10 s) and b (15 s) in the first, c (10 s) in the last.
    assert lines["latency_p95_s"].iloc[0] == pytest.approx(14.75)
    assert math.isnan(lines["latency_p95_s"].iloc[1])
    assert lines["latency_p95_s"].iloc[3] == 10


def test_worker_seconds_are_the_time_each_worker_was_up_within_the_window() -> None:
    assert fleet.worker_seconds(EVENTS, T0, T0 + 40_000) == 40 + 20


def test_a_new_worker_taking_a_task_after_a_step_is_timed_from_the_step() -> None:
    # At 8 s only w1 is up; w2 (up at 10 s) starts task b at 12 s: 4 s after the step.
    assert fleet.scale_up_delay_s(TASKS, EVENTS, step_at_s=8) == 4
    # After 12 s no worker that was not already up takes a task.
    assert math.isnan(fleet.scale_up_delay_s(TASKS, EVENTS, step_at_s=15))


def test_the_summary_judges_latency_and_counts_the_cost() -> None:
    figures = fleet.summary(TASKS, EVENTS, latency_target_s=12, bin_s=10)
    assert figures["answered"] == 3
    assert figures["latency_p95_s"] == pytest.approx(14.5)
    assert figures["latency_target_met"] == 0
    assert figures["worker_seconds"] == 60
    assert figures["peak_workers"] == 2
    assert figures["utilization"] == pytest.approx(18 / 60)
    # Bins with arrivals: the first (100 % busy) and the last (0 %): neither in 70-80 %.
    assert figures["share_of_time_in_band"] == 0


def test_a_run_keeps_its_scaling_decisions(tmp_path: Path) -> None:
    decisions = pd.DataFrame(
        [{"timestamp": T0, "current": 1, "target": 3, "direction": "up", "reason": "a step", "queue_length": 4}]
    )
    run = Run("20261207-0000-scaling", {"workers": 1}, {}, TASKS, EVENTS, decisions)
    loaded = Run.load(run.save(tmp_path))
    assert loaded.scaling[["current", "target", "direction", "reason"]].values.tolist() == [[1, 3, "up", "a step"]]
    plain = Run.load(Run("20261207-0001-fixed", {"workers": 1}, {}, TASKS, EVENTS).save(tmp_path))
    assert plain.scaling.empty and not (tmp_path / plain.run_id / "scaling.csv").exists()
