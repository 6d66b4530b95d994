"""Runs: saved to and loaded from a folder unchanged, listed, compared, and their KPI table in Markdown."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lab.analysis.kpi import KPI_NAMES, evaluate
from lab.runs import (
    CHARTS_DIR,
    ENVIRONMENT_FILE,
    KPI_FILE,
    PARAMS_FILE,
    TASK_COLUMNS,
    TASKS_FILE,
    WORKER_COLUMNS,
    WORKER_EVENTS_FILE,
    Run,
    capture_environment,
    compare,
    kpi_markdown,
    list_runs,
    new_run_id,
)
from tests.unit.test_kpi import T0, events_frame, four_tasks, half_busy_events, task, tasks_frame


def make_run(run_id: str = "20261125-2015-test", workers: int = 2) -> Run:
    tasks = four_tasks()
    # What the collector leaves for a task that never finished: None stamps and no outcome.
    tasks.loc[len(tasks)] = {**task("t5", 4, 1), "started": None, "finished": None, "delivered": None} | {
        "outcome": None,
        "error": None,
        "language": None,
    }
    return Run(
        run_id=run_id,
        params={"workers": workers, "rate_per_s": 0.5, "work_seconds": 10},
        environment={"python": "3.x", "git_commit": None},
        tasks=tasks,
        worker_events=half_busy_events(),
    )


def test_a_saved_run_loads_back_equal(tmp_path: Path) -> None:
    run = make_run()
    folder = run.save(tmp_path)
    loaded = Run.load(folder)
    assert loaded.run_id == run.run_id
    assert loaded.params == run.params
    assert loaded.environment == run.environment
    pd.testing.assert_frame_equal(loaded.tasks, run.tasks)
    pd.testing.assert_frame_equal(loaded.worker_events, run.worker_events)
    pd.testing.assert_frame_equal(loaded.kpis(), run.kpis())


def test_a_run_keeps_the_values_it_was_given(tmp_path: Path) -> None:
    run = Run.load(make_run().save(tmp_path))
    assert list(run.tasks.columns) == TASK_COLUMNS
    assert list(run.worker_events.columns) == WORKER_COLUMNS
    first = run.tasks.iloc[0]
    assert first["submitted"] == T0
    assert first["error"] == ""
    assert pd.isna(run.tasks.iloc[4]["delivered"])
    assert run.tasks.iloc[4]["outcome"] == ""
    assert run.tasks.iloc[3]["error"] == "boom"


def test_empty_frames_round_trip(tmp_path: Path) -> None:
    run = Run("20261125-2015-empty", {}, {}, tasks_frame([]), events_frame([]))
    loaded = Run.load(run.save(tmp_path))
    pd.testing.assert_frame_equal(loaded.tasks, run.tasks)
    pd.testing.assert_frame_equal(loaded.worker_events, run.worker_events)


def test_save_writes_the_run_files_into_a_folder_named_after_the_run(tmp_path: Path) -> None:
    folder = make_run().save(tmp_path)
    assert folder == tmp_path / "20261125-2015-test"
    for name in (TASKS_FILE, WORKER_EVENTS_FILE, PARAMS_FILE, ENVIRONMENT_FILE, KPI_FILE):
        assert (folder / name).is_file()
    assert json.loads((folder / PARAMS_FILE).read_text())["workers"] == 2
    assert CHARTS_DIR == "charts"


def test_saving_over_an_existing_run_is_refused_unless_asked(tmp_path: Path) -> None:
    run = make_run()
    run.save(tmp_path)
    with pytest.raises(FileExistsError):
        run.save(tmp_path)
    assert run.save(tmp_path, overwrite=True) == tmp_path / run.run_id


def test_kpi_markdown_names_every_kpi_and_its_result(tmp_path: Path) -> None:
    text = (make_run().save(tmp_path) / KPI_FILE).read_text()
    assert text.startswith("# KPIs of run 20261125-2015-test")
    for name in KPI_NAMES:
        assert f"| {name} |" in text
    assert "FAIL" in text and "pass" in text
    assert "n/a" in text  # registration: no register events in this run


def test_kpi_markdown_has_one_table_row_per_kpi_with_equal_cells() -> None:
    table = evaluate(four_tasks(), half_busy_events(), workers=2)
    table.loc[0, "how"] = "a | pipe\nand a newline"
    lines = kpi_markdown(table).splitlines()
    rows = [line for line in lines if line.startswith("|")]
    assert len(rows) == 2 + len(KPI_NAMES)
    # Escaped pipes do not split cells.
    assert {row.replace("\\|", "").count("|") for row in rows} == {7}


def test_new_run_id_is_utc_minute_and_a_safe_label() -> None:
    now = datetime(2026, 11, 25, 20, 15, 42, tzinfo=timezone.utc)
    assert new_run_id("6 workers/75%", now) == "20261125-2015-6-workers-75"
    with pytest.raises(ValueError):
        new_run_id("///", now)


def test_list_runs_gives_saved_runs_in_id_order_and_nothing_for_a_missing_root(tmp_path: Path) -> None:
    make_run("20261125-2016-b").save(tmp_path)
    make_run("20261125-2015-a").save(tmp_path)
    (tmp_path / "not-a-run").mkdir()
    assert [p.name for p in list_runs(tmp_path)] == ["20261125-2015-a", "20261125-2016-b"]
    assert list_runs(tmp_path / "missing") == []


def test_compare_gives_one_row_per_run() -> None:
    one = make_run("r1", workers=2)
    two = Run("r2", {"workers": 1, "duration_s": 60}, {}, tasks_frame([task("t1", 0, 11)]), half_busy_events())
    table = compare([one, two])
    assert table["run_id"].tolist() == ["r1", "r2"]
    assert table["workers"].tolist() == [2, 1]
    assert table["answered"].tolist() == [3, 1]
    # One answer over the 11 s from its question to its answer, not over the 60 s of sending.
    assert table.loc[1, "throughput_per_min"] == pytest.approx(60 / 11)
    assert table.loc[0, "p50_ms"] == pytest.approx(12_000)
    assert table["utilization_pct"].tolist() == pytest.approx([50.0, 50.0])


def test_workers_default_to_the_distinct_workers_seen() -> None:
    run = Run("r", {}, {}, four_tasks(), half_busy_events())
    assert run.workers == 2


REAL_RUN = subprocess.run


def test_environment_names_python_platform_cpus_and_the_git_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_git(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if args[0] != "git":  # platform.platform() may ask uname
            return REAL_RUN(args, **kwargs)
        assert args == ["git", "rev-parse", "HEAD"]
        return subprocess.CompletedProcess(args, 0, stdout="a" * 40 + "\n", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_git)
    env = capture_environment()
    assert {"python", "platform", "cpu_count"} <= env.keys()
    assert env["git_commit"] == "a" * 40


def test_environment_without_git_has_no_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if args[0] != "git":
            return REAL_RUN(args, **kwargs)
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert capture_environment()["git_commit"] is None
