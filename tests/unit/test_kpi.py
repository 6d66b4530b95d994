"""KPIs on small synthetic runs whose answers are known by hand."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from lab.analysis.kpi import (
    KPI_COLUMNS,
    KPI_NAMES,
    evaluate,
    per_second,
    percentiles,
    utilization,
    utilization_by_worker,
)
from lab.runs import TASK_COLUMNS, WORKER_COLUMNS

T0 = 1_764_100_000_000  # ms since the epoch


def task(
    task_id: str,
    submitted_s: float,
    latency_s: float,
    *,
    outcome: str = "answered",
    processing_ms: int = 10_000,
    assign_to_start_ms: int = 20,
    finish_to_deliver_ms: int = 50,
) -> dict[str, Any]:
    submitted = T0 + int(submitted_s * 1000)
    delivered = submitted + int(latency_s * 1000)
    finished = delivered - finish_to_deliver_ms
    started = finished - processing_ms
    return {
        "task_id": task_id,
        "submitted": submitted,
        "position": 0,
        "assigned": started - assign_to_start_ms,
        "started": started,
        "finished": finished,
        "delivered": delivered,
        "worker_id": "w1",
        "language": "en",
        "processing_time_ms": processing_ms,
        "model_time_ms": processing_ms - 5,
        "attempt": 1,
        "outcome": outcome,
        "error": "" if outcome == "answered" else "boom",
    }


def tasks_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame: pd.DataFrame = pd.DataFrame(rows, columns=TASK_COLUMNS)
    return frame


def events_frame(rows: list[tuple[float, str, str, str]]) -> pd.DataFrame:
    """Rows of (seconds from T0, worker, state, source)."""
    frame: pd.DataFrame = pd.DataFrame(
        [
            {"timestamp": T0 + int(t * 1000), "worker_id": w, "state": s, "task_id": "", "source": src}
            for t, w, s, src in rows
        ],
        columns=WORKER_COLUMNS,
    )
    return frame


def half_busy_events(source: str = "grpc") -> pd.DataFrame:
    # Two workers online for 10 s, each busy for 5 of them.
    return events_frame(
        [
            (0, "a", "idle", source),
            (0, "b", "busy", source),
            (5, "a", "busy", source),
            (5, "b", "idle", source),
            (10, "a", "idle", source),
            (10, "b", "idle", source),
        ]
    )


def four_tasks() -> pd.DataFrame:
    # Latencies 11, 12, 13, 14 s; the last one failed.
    return tasks_frame(
        [
            task("t1", 0, 11),
            task("t2", 1, 12),
            task("t3", 2, 13),
            task("t4", 3, 14, outcome="failed"),
        ]
    )


def kpis(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(row["kpi"]): {str(k): v for k, v in row.items()} for row in table.to_dict("records")}


def test_percentiles_interpolate_linearly_and_max_is_the_largest() -> None:
    p = percentiles([1.0, 2.0, 3.0, 4.0])
    assert p == pytest.approx({"p50": 2.5, "p90": 3.7, "p95": 3.85, "p99": 3.97, "max": 4.0})


def test_percentiles_ignore_missing_values_and_are_nan_when_empty() -> None:
    assert percentiles([1.0, float("nan"), 3.0])["p50"] == 2.0
    assert all(math.isnan(v) for v in percentiles([]).values())


def test_evaluate_gives_every_kpi_once_in_order_with_the_documented_columns() -> None:
    table = evaluate(four_tasks(), half_busy_events(), workers=2)
    assert list(table.columns) == KPI_COLUMNS
    assert table["kpi"].tolist() == KPI_NAMES
    assert all(isinstance(h, str) and h for h in table["how"])


def test_availability_of_eight_answered_out_of_ten_fails() -> None:
    # Two failures: more than a small run's one (see test_kpi_readable for one failure in a small run).
    frame = tasks_frame([task(f"t{i}", i, 11, outcome="failed" if i < 2 else "answered") for i in range(10)])
    row = kpis(evaluate(frame, half_busy_events(), workers=2))["availability"]
    assert row["measured"] == pytest.approx(80.0)
    assert row["unit"] == "%"
    assert row["passed"] is False
    assert row["verdict"] == "FAIL"


def test_availability_of_all_answered_passes() -> None:
    frame = tasks_frame([task(f"t{i}", i, 11) for i in range(5)])
    assert kpis(evaluate(frame, half_busy_events(), workers=2))["availability"]["passed"] is True


def test_latency_judges_p95_of_answered_tasks_in_milliseconds() -> None:
    row = kpis(evaluate(four_tasks(), half_busy_events(), workers=2))["latency"]
    # The answered tasks took 11, 12 and 13 s: p95 interpolates to 12.9 s.
    assert row["measured"] == pytest.approx(12_900)
    assert row["unit"] == "ms"
    assert row["target"] == "p95 < 15 000 ms"
    assert row["passed"] is True
    assert "p95" in row["how"]
    assert "max 13 000 ms" in row["detail"]


def test_latency_over_fifteen_seconds_at_p95_fails() -> None:
    frame = tasks_frame([task(f"t{i}", i, 16) for i in range(4)])
    assert kpis(evaluate(frame, half_busy_events(), workers=1))["latency"]["passed"] is False


def test_throughput_counts_answered_tasks_per_minute_of_the_run_window() -> None:
    # 3 answered between the first submission (0 s) and the last delivery (3 + 14 = 17 s).
    row = kpis(evaluate(four_tasks(), half_busy_events(), workers=2))["throughput"]
    assert row["measured"] == pytest.approx(3 / (17 / 60))
    assert row["passed"] is True
    assert "2 tasks/min" in row["target"]


def test_throughput_uses_the_given_duration_and_fails_below_n_per_minute() -> None:
    row = kpis(evaluate(four_tasks(), half_busy_events(), workers=4, params={"duration_s": 60}))["throughput"]
    assert row["measured"] == pytest.approx(3.0)
    assert row["passed"] is False


def test_two_workers_busy_half_the_time_are_fifty_percent_utilized() -> None:
    assert utilization(half_busy_events()) == pytest.approx(0.5)
    normal = {"target_utilization": 0.75}
    row = kpis(evaluate(four_tasks(), half_busy_events(), workers=2, params=normal))["utilization"]
    assert row["measured"] == pytest.approx(50.0)
    assert row["unit"] == "%"
    assert row["passed"] is False  # below 70-80% at a normal load


def test_utilization_prefers_grpc_events_and_falls_back_to_mqtt() -> None:
    mqtt_all_busy = events_frame([(0, "a", "busy", "mqtt"), (10, "a", "idle", "mqtt")])
    both = pd.concat([half_busy_events("grpc"), mqtt_all_busy], ignore_index=True)
    assert utilization(both) == pytest.approx(0.5)
    assert utilization(mqtt_all_busy) == pytest.approx(1.0)


def test_utilization_does_not_count_time_offline() -> None:
    events = events_frame(
        [(0, "a", "busy", "grpc"), (4, "a", "offline", "grpc"), (8, "a", "idle", "grpc"), (12, "a", "idle", "grpc")]
    )
    per_worker = utilization_by_worker(events)
    assert per_worker.loc[0, "online_s"] == pytest.approx(8.0)
    assert per_worker.loc[0, "utilization"] == pytest.approx(0.5)


def test_mqtt_grpc_and_overhead_latencies_come_from_their_timestamps() -> None:
    frame = tasks_frame(
        [task(f"t{i}", i, 11, assign_to_start_ms=150, finish_to_deliver_ms=2000, processing_ms=9000) for i in range(3)]
    )
    rows = kpis(evaluate(frame, half_busy_events(), workers=1))
    assert rows["mqtt_latency"]["measured"] == pytest.approx(150.0)
    assert rows["mqtt_latency"]["passed"] is False
    assert rows["grpc_latency"]["measured"] == pytest.approx(2000.0)
    assert rows["grpc_latency"]["passed"] is False
    assert rows["overhead"]["measured"] == pytest.approx(2000.0)  # 11 s latency - 9 s processing
    assert rows["overhead"]["passed"] is False


def test_small_latencies_pass_their_targets() -> None:
    rows = kpis(evaluate(four_tasks(), half_busy_events(), workers=2))
    assert rows["mqtt_latency"]["measured"] == pytest.approx(20.0)
    assert rows["mqtt_latency"]["passed"] is True
    assert rows["grpc_latency"]["passed"] is True


def test_registration_is_from_register_to_the_masters_first_idle() -> None:
    events = events_frame(
        [
            (0, "a", "online", "mqtt"),
            (3.5, "a", "idle", "grpc"),
            (1, "b", "online", "mqtt"),
            (2, "b", "busy", "mqtt"),  # a first busy is not registration
            (5, "b", "idle", "grpc"),
        ]
    )
    row = kpis(evaluate(four_tasks(), events, workers=2))["registration"]
    assert row["measured"] == pytest.approx(4000.0)  # the slower worker, in ms
    assert row["passed"] is True


def test_a_worker_that_joins_a_queue_is_registered_when_the_master_first_assigns_it() -> None:
    # Questions waiting: the master makes it busy at once, and its first idle comes after a 10 s task.
    events = events_frame([(0, "a", "online", "mqtt"), (0.4, "a", "busy", "grpc"), (10.4, "a", "idle", "grpc")])
    assert kpis(evaluate(four_tasks(), events, workers=1))["registration"]["measured"] == pytest.approx(400.0)


def test_a_worker_that_joins_with_nothing_queued_is_registered_at_the_masters_online() -> None:
    # The master marks it idle at once and says only worker.online: its first idle would come a task later.
    events = events_frame([(0, "a", "online", "mqtt"), (0.01, "a", "online", "grpc"), (26.5, "a", "busy", "grpc")])
    assert kpis(evaluate(four_tasks(), events, workers=1))["registration"]["measured"] == pytest.approx(10.0)


def test_a_worker_known_only_from_the_master_has_no_registration_to_measure() -> None:
    events = events_frame([(0, "a", "online", "grpc"), (3, "a", "idle", "grpc")])
    assert math.isnan(kpis(evaluate(four_tasks(), events, workers=1))["registration"]["measured"])


def test_registration_slower_than_five_seconds_fails() -> None:
    events = events_frame([(0, "a", "online", "mqtt"), (6, "a", "idle", "grpc")])
    assert kpis(evaluate(four_tasks(), events, workers=1))["registration"]["passed"] is False


def test_registration_without_master_idle_events_is_not_judged() -> None:
    row = kpis(evaluate(four_tasks(), half_busy_events("mqtt"), workers=2))["registration"]
    assert math.isnan(row["measured"])
    assert row["passed"] is None
    assert "Not measurable" in row["how"]


def test_empty_frames_give_every_kpi_unjudged_instead_of_raising() -> None:
    table = evaluate(tasks_frame([]), events_frame([]), workers=3)
    assert table["kpi"].tolist() == KPI_NAMES
    assert table["passed"].isna().all()
    assert set(table["verdict"]) == {"n/a"}


def test_zero_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        evaluate(four_tasks(), half_busy_events(), workers=0)


def test_per_second_counts_submissions_answers_and_tasks_in_the_system() -> None:
    frame = tasks_frame([task("t1", 0.2, 1.5), task("t2", 0.7, 2.5), task("t3", 1.3, 0.5, outcome="failed")])
    series = per_second(frame)
    # Seconds count from the first submission (0.2 s): t1 leaves at +1.5 s, t2 at +3.0 s, t3 (failed) at +1.6 s.
    assert series.index.tolist() == [0, 1, 2, 3]
    assert series["submitted"].tolist() == [2, 1, 0, 0]
    assert series["answered"].tolist() == [0, 1, 0, 1]
    assert series["in_system"].tolist() == [2, 1, 1, 0]
    assert series["time"].iloc[0] == pd.Timestamp(T0 + 200, unit="ms", tz="UTC")


def test_per_second_keeps_never_finished_tasks_in_the_system() -> None:
    rows = [task("t1", 0, 2.5), {**task("t2", 0.5, 1), "delivered": None, "finished": None, "outcome": None}]
    assert per_second(tasks_frame(rows))["in_system"].tolist() == [2, 2, 1]


def test_per_second_of_no_tasks_is_empty() -> None:
    assert per_second(tasks_frame([])).empty
