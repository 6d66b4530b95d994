"""Runs saved under ``data/runs/<run-id>/`` and loaded back: tasks and worker events (CSV), parameters and
environment (JSON), the KPI table (Markdown), and a ``charts/`` folder left to the chart functions.

A ``Run`` keeps the collector's columns in canonical dtypes (timestamps and other counts as nullable
``Int64`` whole ms with <NA> for unknown, text ``str`` with "" for unknown) so that a saved and loaded run
equals the one that was saved; other columns are kept as given and read back as pandas infers them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from lab import kpi
from lab.collect import TASK_COLUMNS, WORKER_COLUMNS

RUNS_ROOT = Path(__file__).resolve().parents[1] / "data" / "runs"
CHARTS_DIR = "charts"
TASKS_FILE = "tasks.csv"
WORKER_EVENTS_FILE = "worker_events.csv"
PARAMS_FILE = "params.json"
ENVIRONMENT_FILE = "environment.json"
KPI_FILE = "kpi.md"

_TEXT_COLUMNS = {"task_id", "worker_id", "language", "outcome", "error", "state", "source"}
_NUMBER_COLUMNS = {c for c in [*TASK_COLUMNS, *WORKER_COLUMNS] if c not in _TEXT_COLUMNS}


def _canonical(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The frame with the known columns first (added empty when missing) and in canonical dtypes."""
    out = frame.copy()
    for column in columns:
        if column not in out:
            out[column] = pd.Series(dtype="Int64" if column in _NUMBER_COLUMNS else "str", index=out.index)
    out = out[[*columns, *[c for c in out.columns if c not in columns]]]
    for column in out.columns:
        if column in _TEXT_COLUMNS:
            # fillna before astype: str(None) would be the text "None".
            out[column] = out[column].astype("object").where(out[column].notna(), "").astype("str")
        elif column in _NUMBER_COLUMNS:
            # Whole ms: the system stamps in integer ms, and Int64 keeps the CSV free of "1764100000000.0".
            out[column] = pd.to_numeric(out[column], errors="coerce").round().astype("Int64")
    result: pd.DataFrame = out.reset_index(drop=True)
    return result


def _read_csv(path: Path) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0).columns
    text = [c for c in header if c in _TEXT_COLUMNS]
    numbers = [c for c in header if c in _NUMBER_COLUMNS]
    # Only numeric columns read "" as missing; in text columns "" is the value that was saved.
    frame: pd.DataFrame = pd.read_csv(
        path,
        dtype={c: ("str" if c in _TEXT_COLUMNS else "Int64") for c in [*text, *numbers]},
        keep_default_na=False,
        na_values={c: [""] for c in header if c not in _TEXT_COLUMNS},
    )
    return frame


def capture_environment() -> dict[str, Any]:
    """Python version, platform, CPU count, when, and the git commit (None outside a git checkout)."""
    try:
        commit: str | None = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "git_commit": commit or None,
        "captured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def new_run_id(label: str, now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMM-<label>`` in UTC, the label reduced to letters, digits, ``-`` and ``_``."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")
    if not safe:
        raise ValueError(f"run label {label!r} has no letters or digits")
    return f"{stamp:%Y%m%d-%H%M}-{safe}"


def list_runs(root: Path = RUNS_ROOT) -> list[Path]:
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

    def __post_init__(self) -> None:
        self.tasks = _canonical(self.tasks, TASK_COLUMNS)
        self.worker_events = _canonical(self.worker_events, WORKER_COLUMNS)

    @property
    def workers(self) -> int:
        """``params["workers"]``, else the number of distinct workers seen in the events (at least 1)."""
        if "workers" in self.params:
            return int(self.params["workers"])
        seen = self.worker_events["worker_id"]
        return max(1, int(seen[seen != ""].nunique()))

    def kpis(self) -> pd.DataFrame:
        """The KPI table (``lab.kpi.evaluate``) for this run."""
        return kpi.evaluate(self.tasks, self.worker_events, self.workers, self.params)

    def save(self, root: Path = RUNS_ROOT, *, overwrite: bool = False, charts: bool = True) -> Path:
        """Write the run to ``root/<run_id>/`` and return that folder, with its charts in ``charts/`` unless
        ``charts`` is False; refuses an existing run unless ``overwrite``."""
        folder = root / self.run_id
        if (folder / PARAMS_FILE).exists() and not overwrite:
            raise FileExistsError(f"run {self.run_id} already saved in {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        self.tasks.to_csv(folder / TASKS_FILE, index=False)
        self.worker_events.to_csv(folder / WORKER_EVENTS_FILE, index=False)
        (folder / ENVIRONMENT_FILE).write_text(json.dumps(self.environment, indent=2, default=str) + "\n")
        (folder / KPI_FILE).write_text(kpi_markdown(self.kpis(), title=f"KPIs of run {self.run_id}"))
        # params last: its presence is what marks a complete run (see list_runs).
        (folder / PARAMS_FILE).write_text(json.dumps(self.params, indent=2, default=str) + "\n")
        if charts:
            # Charts come after the data: they are drawn from it, so a chart that fails loses nothing.
            # Imported here so that working with runs without charts never loads matplotlib.
            from lab.charts import save_charts

            save_charts(self, folder / CHARTS_DIR)
        return folder

    @classmethod
    def load(cls, path: Path) -> Run:
        """The run saved in folder ``path``."""
        return cls(
            run_id=path.name,
            params=json.loads((path / PARAMS_FILE).read_text()),
            environment=json.loads((path / ENVIRONMENT_FILE).read_text()),
            tasks=_read_csv(path / TASKS_FILE),
            worker_events=_read_csv(path / WORKER_EVENTS_FILE),
        )


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "pass" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.4g}"
    # A pipe would end the cell early; newlines would end the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def kpi_markdown(table: pd.DataFrame, title: str = "KPIs") -> str:
    """The KPI table (from ``lab.kpi.evaluate``) as a Markdown document."""
    headers = ["KPI", "Measured", "Unit", "Target", "Result", "How", "Detail"]
    lines = [f"# {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.itertuples(index=False):
        cells = [row.kpi, row.measured, row.unit, row.target, row.passed, row.how, row.detail]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def compare(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: run_id, workers, answered, throughput_per_min, p50_s and p95_s latency, utilization."""
    rows = []
    for run in runs:
        latency = kpi.percentiles(kpi.latency_s(run.tasks).tolist())
        rows.append(
            {
                "run_id": run.run_id,
                "workers": run.workers,
                "answered": int((run.tasks["outcome"] == "answered").sum()),
                # Over the window from first question to last answer (see charts.scaling for why).
                "throughput_per_min": kpi.throughput_per_min(run.tasks),
                "p50_s": latency["p50"],
                "p95_s": latency["p95"],
                "utilization": kpi.utilization(run.worker_events),
            }
        )
    columns = ["run_id", "workers", "answered", "throughput_per_min", "p50_s", "p95_s", "utilization"]
    table: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return table
