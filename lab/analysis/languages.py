"""The KPIs that differ between worker languages, broken down by language: utilization (busy over online
time of the language's workers) and latency and processing time of the tasks they answered.

A worker's language is the prefix of its id (`python-worker-3f9a1c`: services.protocol.worker_ids); an id
that does not follow the convention counts as `unknown`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lab.analysis import kpi
from services.protocol.worker_ids import worker_language

__all__ = ["BREAKDOWN_COLUMNS", "UNKNOWN", "breakdown", "breakdown_records", "language_of"]

UNKNOWN = "unknown"
BREAKDOWN_COLUMNS = [
    "language",
    "workers",
    "answered",
    "utilization",
    "latency_p50_ms",
    "latency_p95_ms",
    "processing_p50_ms",
    "processing_p95_ms",
]


def language_of(worker_id: Any) -> str:
    """The language a worker id names, `unknown` for another id and "" for none (a task never assigned)."""
    if not isinstance(worker_id, str) or not worker_id:
        return ""
    return worker_language(worker_id) or UNKNOWN


def _utilization(worker_events: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """Per language: (workers seen, busy over online time of them all)."""
    per_worker = kpi.utilization_by_worker(worker_events)
    per_worker = per_worker.assign(language=per_worker["worker_id"].map(language_of))
    result: dict[str, tuple[int, float]] = {}
    for language, group in per_worker.groupby("language", sort=True):
        online = float(group["online_s"].sum())
        busy = float(group["busy_s"].sum())
        result[str(language)] = (len(group), busy / online if online > 0 else float("nan"))
    return result


def breakdown(tasks: pd.DataFrame, worker_events: pd.DataFrame) -> pd.DataFrame:
    """One row per worker language (sorted), columns `BREAKDOWN_COLUMNS`: workers seen, tasks answered,
    utilization (as the KPI: busy over online time, a fraction), latency p50/p95 (ms) and processing_time_ms p50/p95
    of the answered tasks. Empty frames give an empty table; a language with workers but no answered task
    has NaN latencies."""
    answered = tasks[tasks["outcome"] == "answered"]
    answered = answered.assign(_language=answered["worker_id"].map(language_of))
    latency = kpi.latency_s(answered) * 1000
    processing = pd.to_numeric(answered["processing_time_ms"], errors="coerce").astype("float64")
    usage = _utilization(worker_events)
    languages = sorted({*usage, *(x for x in answered["_language"] if x)})
    rows = []
    for language in languages:
        mine = answered["_language"] == language
        lat = kpi.percentiles(latency[latency.index.isin(answered.index[mine])].tolist())
        proc = kpi.percentiles(processing[mine].dropna().tolist())
        workers, busy = usage.get(language, (0, float("nan")))
        rows.append(
            {
                "language": language,
                "workers": workers,
                "answered": int(mine.sum()),
                "utilization": busy,
                "latency_p50_ms": lat["p50"],
                "latency_p95_ms": lat["p95"],
                "processing_p50_ms": proc["p50"],
                "processing_p95_ms": proc["p95"],
            }
        )
    table: pd.DataFrame = pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)
    return table


def breakdown_records(tasks: pd.DataFrame, worker_events: pd.DataFrame) -> list[dict[str, Any]]:
    """`breakdown` as a list of plain dicts (what `kpi.evaluate` keeps in its table's `attrs`)."""
    return [{str(k): v for k, v in row.items()} for row in breakdown(tasks, worker_events).to_dict("records")]
