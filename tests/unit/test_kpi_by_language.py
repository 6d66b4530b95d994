"""The KPIs broken down by worker language (lab.analysis.languages), in the KPI table's Markdown and chart."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from lab.analysis.kpi import evaluate
from lab.analysis.languages import BREAKDOWN_COLUMNS, breakdown, breakdown_records, language_of
from lab.charts import by_language
from lab.runs import TASK_COLUMNS, WORKER_COLUMNS, kpi_markdown

T0 = 1_764_100_000_000  # ms since the epoch
PY, GO, JAVA = "python-worker-aaaaaa", "go-worker-bbbbbb", "java-worker-cccccc"


def task(
    task_id: str, worker_id: str, latency_s: float, processing_ms: int, outcome: str = "answered"
) -> dict[str, Any]:
    submitted = T0
    delivered = submitted + int(latency_s * 1000)
    return {
        "task_id": task_id,
        "submitted": submitted,
        "assigned": submitted,
        "started": submitted,
        "finished": delivered - 10,
        "delivered": delivered,
        "worker_id": worker_id,
        "processing_time_ms": processing_ms,
        "attempt": 1,
        "outcome": outcome,
    }


def tasks() -> pd.DataFrame:
    rows = [
        task("p1", PY, 1.0, 900),
        task("p2", PY, 3.0, 2900),
        task("g1", GO, 0.5, 400),
        task("g2", GO, 0.5, 400),
        task("g3", GO, 2.5, 2400),
        task("j1", JAVA, 9.0, 8000, outcome="failed"),  # not answered: no latency for Java
        task("x1", "w1", 2.0, 100),  # an id off the convention
    ]
    frame: pd.DataFrame = pd.DataFrame(rows, columns=TASK_COLUMNS)
    return frame


def events() -> pd.DataFrame:
    """10 s online each: the Python worker busy 5 s, the two Go workers 2 and 8 s, Java never."""
    rows = [
        (0, PY, "idle"),
        (5, PY, "busy"),
        (0, GO, "busy"),
        (2, GO, "idle"),
        (0, "go-worker-dddddd", "idle"),
        (2, "go-worker-dddddd", "busy"),
        (0, JAVA, "idle"),
        (10, PY, "idle"),
        (10, GO, "idle"),
        (10, "go-worker-dddddd", "idle"),
        (10, JAVA, "idle"),
    ]
    frame: pd.DataFrame = pd.DataFrame(
        [{"timestamp": T0 + t * 1000, "worker_id": w, "state": s, "task_id": "", "source": "grpc"} for t, w, s in rows],
        columns=WORKER_COLUMNS,
    )
    return frame


def test_the_language_is_the_worker_id_prefix() -> None:
    assert language_of(GO) == "go"
    assert language_of("w1") == "unknown"
    assert language_of("") == ""
    assert language_of(None) == ""


def test_utilization_latency_and_processing_time_by_language() -> None:
    table = breakdown(tasks(), events()).set_index("language")
    assert list(table.reset_index().columns) == BREAKDOWN_COLUMNS
    assert list(table.index) == ["go", "java", "python", "unknown"]
    assert table.loc["go", "workers"] == 2 and table.loc["python", "workers"] == 1
    # Go: (2 + 8) busy of 20 s online; Python 5 of 10; Java 0 of 10.
    assert table.loc["go", "utilization"] == pytest.approx(0.5)
    assert table.loc["python", "utilization"] == pytest.approx(0.5)
    assert table.loc["java", "utilization"] == 0
    assert table.loc["go", "answered"] == 3 and table.loc["java", "answered"] == 0
    assert table.loc["go", "latency_p50_ms"] == pytest.approx(500)
    assert table.loc["python", "latency_p50_ms"] == pytest.approx(2000)
    assert table.loc["python", "processing_p50_ms"] == pytest.approx(1900)
    assert math.isnan(table.loc["java", "latency_p95_ms"])
    # No worker events for the off-convention worker: unknown utilization, but its task counts.
    assert table.loc["unknown", "answered"] == 1 and math.isnan(table.loc["unknown", "utilization"])


def test_empty_frames_give_an_empty_breakdown() -> None:
    empty = breakdown(pd.DataFrame(columns=TASK_COLUMNS), pd.DataFrame(columns=WORKER_COLUMNS))
    assert empty.empty and list(empty.columns) == BREAKDOWN_COLUMNS


def test_the_kpi_table_carries_the_breakdown_and_its_markdown_prints_it() -> None:
    table = evaluate(tasks(), events(), workers=4)
    pd.testing.assert_frame_equal(pd.DataFrame(table.attrs["by_language"]), breakdown(tasks(), events()))
    assert table.attrs["by_language"][0]["language"] == breakdown_records(tasks(), events())[0]["language"] == "go"
    text = kpi_markdown(table, title="mixed")
    section = text.split("## By worker language", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Language | Workers | Answered | Utilization")
    assert rows[1].startswith("| go | 2 | 3 | 50.0% | 500 ms |")
    assert rows[2].startswith("| java | 1 | 0 | 0.0% | n/a |")


def test_one_language_needs_no_breakdown_in_the_markdown() -> None:
    only_go = tasks()[tasks()["worker_id"] == GO]
    table = evaluate(only_go, events()[events()["worker_id"] == GO], workers=1)
    assert len(table.attrs["by_language"]) == 1
    assert "By worker language" not in kpi_markdown(table)
    # Given explicitly, the breakdown wins over the table's own.
    assert "By worker language" in kpi_markdown(table, by_language=breakdown_records(tasks(), events()))


def test_the_chart_draws_utilization_and_latency_by_language() -> None:
    figure = by_language(tasks(), events())
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels == ["go", "java", "python", "unknown"]
    assert isinstance(by_language(pd.DataFrame(columns=TASK_COLUMNS), pd.DataFrame(columns=WORKER_COLUMNS)), Figure)
