"""Per-second series of a run's tasks (``lab.runs.schema`` columns): what the throughput chart draws."""

from __future__ import annotations

import pandas as pd

__all__ = ["per_second"]


def stamps_ms(tasks: pd.DataFrame, column: str) -> pd.Series:
    """`tasks[column]` as float milliseconds, NaN where unknown."""
    # Collector frames hold None for unknown stamps (object dtype); float makes them NaN for arithmetic.
    return pd.to_numeric(tasks[column], errors="coerce").astype("float64")


def per_second(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per-second time series from the first submission: tasks submitted and answered in each second, and
    tasks in the system (queued or in service) at the end of it. Index ``second`` (0, 1, ...); a ``time``
    column gives the start of each second in UTC. Empty when no task has a submission time.

    A task leaves the system when delivered (or, failing that, finished); one that never did stays in it.
    """
    submitted = stamps_ms(tasks, "submitted")
    columns = ["time", "submitted", "answered", "in_system"]
    if submitted.dropna().empty:
        empty: pd.DataFrame = pd.DataFrame(columns=columns, index=pd.RangeIndex(0, name="second"))
        return empty
    start = float(submitted.min())
    left = stamps_ms(tasks, "delivered").fillna(stamps_ms(tasks, "finished"))
    answered_at = left[tasks["outcome"] == "answered"]
    last = float(pd.concat([submitted, left]).max())
    seconds = int((last - start) // 1000) + 1
    index = pd.RangeIndex(seconds, name="second")

    def count(stamps: pd.Series) -> pd.Series:
        bins = ((stamps.dropna() - start) // 1000).astype("int64")
        return bins.value_counts().reindex(index, fill_value=0).astype("int64")

    arrived = count(submitted).cumsum()
    # Tasks that never left have no leaving time: they are in the system until the end of the series.
    departed = count(left[submitted.notna()]).cumsum()
    frame: pd.DataFrame = pd.DataFrame(
        {
            "time": pd.to_datetime([start + 1000 * s for s in index], unit="ms", utc=True),
            "submitted": count(submitted),
            "answered": count(answered_at),
            "in_system": (arrived - departed).astype("int64"),
        },
        index=index,
    )
    return frame
