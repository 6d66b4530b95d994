"""Runs saved under ``data/runs/<run-id>/`` and loaded back: tasks, worker events and any autoscaler decisions
(CSV), parameters and environment (JSON) and the KPI table (Markdown). Charts are not drawn here: callers that
want them call ``lab.charts.save_charts(run, folder / CHARTS_DIR)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from lab.analysis import kpi
from lab.paths import RUNS_DIR
from lab.runs.markdown import kpi_markdown
from lab.runs.schema import SCALING_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, canonical, read_csv

CHARTS_DIR = "charts"
TASKS_FILE = "tasks.csv"
WORKER_EVENTS_FILE = "worker_events.csv"
SCALING_FILE = "scaling.csv"  # only for runs with an autoscaler
PARAMS_FILE = "params.json"
ENVIRONMENT_FILE = "environment.json"
KPI_FILE = "kpi.md"


def new_run_id(label: str, now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMM-<label>`` in UTC, the label reduced to letters, digits, ``-`` and ``_``."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")
    if not safe:
        raise ValueError(f"run label {label!r} has no letters or digits")
    return f"{stamp:%Y%m%d-%H%M}-{safe}"


def list_runs(root: Path = RUNS_DIR) -> list[Path]:
    """The saved runs under ``root`` (folders with a params file), oldest first by run id."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / PARAMS_FILE).is_file())


@dataclass
class Run:
    """One experiment: its id, parameters, environment, and the collected frames."""

    run_id: str
    params: dict[str, Any]
    environment: dict[str, Any]
    tasks: pd.DataFrame = field(repr=False)
    worker_events: pd.DataFrame = field(repr=False)
    scaling: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def __post_init__(self) -> None:
        self.tasks = canonical(self.tasks, TASK_COLUMNS)
        self.worker_events = canonical(self.worker_events, WORKER_COLUMNS)
        self.scaling = canonical(self.scaling, SCALING_COLUMNS)

    @property
    def workers(self) -> int:
        """``params["workers"]``, else the number of distinct workers seen in the events (at least 1)."""
        if "workers" in self.params:
            return int(self.params["workers"])
        seen = self.worker_events["worker_id"]
        return max(1, int(seen[seen != ""].nunique()))

    def kpis(self) -> pd.DataFrame:
        """The KPI table (``lab.analysis.kpi.evaluate``) for this run."""
        return kpi.evaluate(self.tasks, self.worker_events, self.workers, self.params)

    def save(self, root: Path = RUNS_DIR, *, overwrite: bool = False) -> Path:
        """Write the run's data to ``root/<run_id>/`` and return that folder; refuses an existing run unless
        ``overwrite``. Charts are the caller's: ``lab.charts.save_charts(run, folder / CHARTS_DIR)``."""
        folder = root / self.run_id
        if (folder / PARAMS_FILE).exists() and not overwrite:
            raise FileExistsError(f"run {self.run_id} already saved in {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        self.tasks.to_csv(folder / TASKS_FILE, index=False)
        self.worker_events.to_csv(folder / WORKER_EVENTS_FILE, index=False)
        if len(self.scaling):
            self.scaling.to_csv(folder / SCALING_FILE, index=False)
        (folder / ENVIRONMENT_FILE).write_text(json.dumps(self.environment, indent=2, default=str) + "\n")
        (folder / KPI_FILE).write_text(kpi_markdown(self.kpis(), title=f"KPIs of run {self.run_id}"))
        # params last: its presence is what marks a complete run (see list_runs).
        (folder / PARAMS_FILE).write_text(json.dumps(self.params, indent=2, default=str) + "\n")
        return folder

    @classmethod
    def load(cls, path: Path) -> Run:
        """The run saved in folder ``path``."""
        return cls(
            run_id=path.name,
            params=json.loads((path / PARAMS_FILE).read_text()),
            environment=json.loads((path / ENVIRONMENT_FILE).read_text()),
            tasks=read_csv(path / TASKS_FILE),
            worker_events=read_csv(path / WORKER_EVENTS_FILE),
            scaling=read_csv(path / SCALING_FILE) if (path / SCALING_FILE).is_file() else pd.DataFrame(),
        )


def compare(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: run_id, workers, answered, throughput_per_min, p50_ms and p95_ms latency, utilization_pct
    (busy over online time, in percent)."""
    rows = []
    for run in runs:
        latency = kpi.percentiles((kpi.latency_s(run.tasks) * 1000).tolist())
        rows.append(
            {
                "run_id": run.run_id,
                "workers": run.workers,
                "answered": int((run.tasks["outcome"] == "answered").sum()),
                # Over the window from first question to last answer (see charts.scaling for why).
                "throughput_per_min": kpi.throughput_per_min(run.tasks),
                "p50_ms": latency["p50"],
                "p95_ms": latency["p95"],
                "utilization_pct": 100 * kpi.utilization(run.worker_events),
            }
        )
    columns = ["run_id", "workers", "answered", "throughput_per_min", "p50_ms", "p95_ms", "utilization_pct"]
    table: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return table
