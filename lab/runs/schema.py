"""The columns of a run's frames (what the collector produces and a saved run keeps) and their dtypes.

Known columns are kept in canonical dtypes (timestamps and other counts as nullable ``Int64`` whole ms with
<NA> for unknown, text ``str`` with "" for unknown) so that a saved and loaded run equals the one that was
saved; other columns are kept as given and read back as pandas infers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

__all__ = [
    "NUMBER_COLUMNS",
    "SCALING_COLUMNS",
    "TASK_COLUMNS",
    "TEXT_COLUMNS",
    "WORKER_COLUMNS",
    "canonical",
    "read_csv",
]

TASK_COLUMNS = [
    "task_id",
    "submitted",
    "position",
    "assigned",
    "started",
    "finished",
    "delivered",
    "worker_id",
    "language",
    "processing_time_ms",
    "model_time_ms",
    "attempt",
    "outcome",
    "error",
]
"""One row per task: its timestamps (ms), where it ran, and how it ended."""
WORKER_COLUMNS = ["timestamp", "worker_id", "state", "task_id", "source"]
"""One row per worker state change."""
SCALING_COLUMNS = ["timestamp", "current", "target", "direction", "reason", "queue_length", "busy", "idle"]
"""One row per autoscaler decision the master announced (Watch `scale.decision`)."""

TEXT_COLUMNS = frozenset(
    {"task_id", "worker_id", "language", "outcome", "error", "state", "source", "direction", "reason"}
)
NUMBER_COLUMNS = frozenset(c for c in [*TASK_COLUMNS, *WORKER_COLUMNS, *SCALING_COLUMNS] if c not in TEXT_COLUMNS)


def canonical(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The frame with the known columns first (added empty when missing) and in canonical dtypes."""
    out = frame.copy()
    for column in columns:
        if column not in out:
            out[column] = pd.Series(dtype="Int64" if column in NUMBER_COLUMNS else "str", index=out.index)
    out = out[[*columns, *[c for c in out.columns if c not in columns]]]
    for column in out.columns:
        if column in TEXT_COLUMNS:
            # fillna before astype: str(None) would be the text "None".
            out[column] = out[column].astype("object").where(out[column].notna(), "").astype("str")
        elif column in NUMBER_COLUMNS:
            # Whole ms: the system stamps in integer ms, and Int64 keeps the CSV free of "1764100000000.0".
            out[column] = pd.to_numeric(out[column], errors="coerce").round().astype("Int64")
    result: pd.DataFrame = out.reset_index(drop=True)
    return result


def read_csv(path: Path) -> pd.DataFrame:
    """A frame saved by ``DataFrame.to_csv``, known columns in canonical dtypes."""
    header = pd.read_csv(path, nrows=0).columns
    text = [c for c in header if c in TEXT_COLUMNS]
    numbers = [c for c in header if c in NUMBER_COLUMNS]
    # Only numeric columns read "" as missing; in text columns "" is the value that was saved.
    frame: pd.DataFrame = pd.read_csv(
        path,
        dtype={c: ("str" if c in TEXT_COLUMNS else "Int64") for c in [*text, *numbers]},
        keep_default_na=False,
        na_values={c: [""] for c in header if c not in TEXT_COLUMNS},
    )
    return frame
