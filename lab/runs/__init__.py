"""Runs of experiments: the columns of their frames, saving and loading them, the machine they ran on, and
their KPI table in Markdown. Knows nothing of how the frames were collected or drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab._lazy import lazy_exports

if TYPE_CHECKING:
    from lab.runs.environment import capture_environment, machine
    from lab.runs.markdown import kpi_markdown
    from lab.runs.schema import TASK_COLUMNS, WORKER_COLUMNS
    from lab.runs.store import (
        CHARTS_DIR,
        ENVIRONMENT_FILE,
        KPI_FILE,
        PARAMS_FILE,
        TASKS_FILE,
        WORKER_EVENTS_FILE,
        Run,
        compare,
        list_runs,
        new_run_id,
    )

__all__ = [
    "CHARTS_DIR",
    "ENVIRONMENT_FILE",
    "KPI_FILE",
    "PARAMS_FILE",
    "TASKS_FILE",
    "TASK_COLUMNS",
    "WORKER_COLUMNS",
    "WORKER_EVENTS_FILE",
    "Run",
    "capture_environment",
    "compare",
    "kpi_markdown",
    "list_runs",
    "machine",
    "new_run_id",
]

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(["capture_environment", "machine"], "environment"),
        "kpi_markdown": "markdown",
        **dict.fromkeys(["TASK_COLUMNS", "WORKER_COLUMNS"], "schema"),
        **dict.fromkeys(
            [
                "CHARTS_DIR",
                "ENVIRONMENT_FILE",
                "KPI_FILE",
                "PARAMS_FILE",
                "TASKS_FILE",
                "WORKER_EVENTS_FILE",
                "Run",
                "compare",
                "list_runs",
                "new_run_id",
            ],
            "store",
        ),
    },
)
