"""The benchmarks' computations on synthetic rows whose figures are known by hand, and the core's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from lab import bench
from lab.bench import registration as bench_registration
from lab.bench import saturation as bench_saturation
from lab.bench.common import per_second
from lab.runs import TASK_COLUMNS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = 1_800_000_000_000  # ms


def saturated_tasks(workers: int, work_ms: int, rounds: int, gap_ms: int = 0) -> pd.DataFrame:
    """`workers` workers each doing `rounds` tasks back to back, `gap_ms` between one task and the next."""
    rows: list[dict[str, Any]] = []
    for w in range(workers):
        for r in range(rounds):
            assigned = T0 + r * (work_ms + gap_ms)
            rows.append(
                {
                    "task_id": f"t{w}-{r}",
                    "assigned": assigned,
                    "started": assigned,
                    "finished": assigned + work_ms,
                    "worker_id": f"w{w}",
                    "outcome": "answered",
                }
            )
    frame: pd.DataFrame = pd.DataFrame(rows, columns=TASK_COLUMNS)
    return frame


def test_workers_never_idle_score_an_efficiency_of_one() -> None:
    figures = bench_saturation.saturation_figures(saturated_tasks(4, 500, 20), workers=4, work_seconds=0.5)
    assert figures["answered"] == 80
    assert figures["window_s"] == 10.0
    assert figures["achieved_per_s"] == 8.0
    assert figures["efficiency"] == 1.0
    assert figures["overhead_per_task_ms"] == 0.0
    assert figures["max_min_ratio"] == 1.0
    assert figures["answers_per_second"] == [4] + [8] * 9 + [4]  # answers at 0.5, 1.0, ... 10.0 s


def test_a_gap_between_tasks_lowers_the_efficiency_by_its_share() -> None:
    # 50 ms lost per 500 ms task: 20 tasks take 20 x 550 - 50 ms.
    figures = bench_saturation.saturation_figures(saturated_tasks(2, 500, 20, gap_ms=50), workers=2, work_seconds=0.5)
    window_s = (20 * 550 - 50) / 1000
    assert figures["window_s"] == pytest.approx(window_s)
    assert figures["efficiency"] == pytest.approx(40 / window_s / 4, abs=1e-4)
    assert figures["overhead_per_task_ms"] == pytest.approx((2 * window_s / 40 - 0.5) * 1000, abs=0.01)


def test_an_uneven_spread_and_an_idle_worker_show_in_the_ratio() -> None:
    tasks = pd.concat([saturated_tasks(1, 500, 6), saturated_tasks(2, 500, 3).iloc[3:]], ignore_index=True)
    figures = bench_saturation.saturation_figures(tasks, workers=3, work_seconds=0.5)
    assert figures["tasks_per_worker"] == {"w0": 6, "w1": 3}
    assert figures["max_min_ratio"] == 2.0
    idle = bench_saturation.saturation_figures(tasks, workers=3, work_seconds=0.5, worker_ids=["w0", "w1", "w2"])
    assert idle["tasks_per_worker_min"] == 0 and idle["max_min_ratio"] is None


def test_failed_tasks_are_not_counted_as_achieved() -> None:
    tasks = saturated_tasks(2, 500, 4)
    tasks.loc[0, "outcome"] = "failed"
    figures = bench_saturation.saturation_figures(tasks, workers=2, work_seconds=0.5)
    assert figures["answered"] == 7
    assert figures["efficiency"] == pytest.approx(7 / 2.0 / 4)


def test_per_second_counts_whole_seconds_and_leaves_out_negative_times() -> None:
    assert per_second([0.0, 0.5, 1.0, 2.9, -0.1]) == [2, 1, 1]
    assert per_second([0.2], until_s=3.5) == [1, 0, 0, 0]
    assert per_second([]) == [0]


def test_registration_stages_come_from_the_earliest_connect_and_the_masters_events() -> None:
    events = [
        {"kind": "worker.online", "worker_id": "w-other", "timestamp": str(T0 + 1)},
        {"kind": "worker.online", "worker_id": "w", "timestamp": str(T0 + 1510)},
        {"kind": "task.assigned", "worker_id": "w", "task_id": "t", "timestamp": str(T0 + 1511)},
        {"kind": "task.answered", "worker_id": "w", "task_id": "t", "started_timestamp": str(T0 + 1520)},
    ]
    registrations = [{"worker_id": "w", "timestamp": T0 + 1506}, {"worker_id": "w", "timestamp": T0 + 1515}]
    times = bench_registration.stage_times(events, registrations, {"w": T0 + 1508}, "w", "t", T0)
    assert times == {"spawned": T0, "connected": T0 + 1506, "assignable": T0 + 1510, "first_task": T0 + 1520}
    with pytest.raises(RuntimeError, match="no assignable, first_task"):
        bench_registration.stage_times([], registrations, {}, "w", "t", T0)


def test_registration_breakdown_gives_p50_and_max_of_each_step() -> None:
    repeats = [
        {"spawned": 0, "connected": 1000, "assignable": 1004, "first_task": 1010},
        {"spawned": 0, "connected": 2000, "assignable": 2002, "first_task": 2020},
        {"spawned": 0, "connected": 1500, "assignable": 1503, "first_task": 1515},
    ]
    figures = bench_registration.breakdown(repeats)
    assert figures["start_to_first_task_ms"] == 1515 and figures["start_to_first_task_max_ms"] == 2020
    assert figures["start_to_connect_ms"] == 1500
    assert figures["connect_to_assignable_ms"] == 3 and figures["connect_to_assignable_max_ms"] == 4
    assert figures["assignable_to_first_task_ms"] == 12
    assert figures["steps_ms"][1] == [2000, 2, 18]
    assert isinstance(bench_registration.chart({"repeats": 3, **figures}), Figure)


def test_save_writes_the_record_and_the_chart_named_after_the_workers(tmp_path: Path) -> None:
    result = {"name": "saturation", "workers": 4, "efficiency": 0.99}
    path = bench.save(result, tmp_path, Figure())
    assert path == tmp_path / "saturation-4w.json"
    saved = json.loads(path.read_text())
    assert saved["efficiency"] == 0.99 and saved["machine"]["cpus"] and saved["measured_at"].endswith("Z")
    assert path.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)
    assert bench.file_stem({"name": "overhead"}) == "overhead"


def test_every_benchmark_has_a_distinct_name_and_a_sub_command() -> None:
    names = [module.NAME for module in bench.BENCHMARKS]
    assert len(names) == len(set(names))
    assert {"overhead", "throughput", "burst", "saturation", "registration", "faults", "soak"} <= set(names)
    from lab.cli import build_parser

    args = build_parser().parse_args(["bench", "saturation", "--seconds", "3", "--json", "--out", "/tmp/x"])
    assert args.module is bench_saturation and args.seconds == 3 and args.json and args.out == Path("/tmp/x")
    assert args.work_seconds == 0.5 and args.workers == 4 and args.load == 2.0
