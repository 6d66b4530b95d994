"""The KPI table's numbers as text: a value with its unit (latencies in ms, fractions in percent) and a verdict
with its reason, shared by the terminal table, the run's ``kpi.md`` and the notebooks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = [
    "COMPACT_HEADERS",
    "compact_frame",
    "compact_rows",
    "is_missing",
    "ms_text",
    "percent_text",
    "prediction_rows",
    "value_text",
    "verdict_text",
]

COMPACT_HEADERS = ("KPI", "Value", "Target", "Verdict")


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA: no value."""
    if value is None:
        return True
    try:
        return bool(math.isnan(value))
    except TypeError:
        return str(value) == "<NA>"


def _grouped(number: float, decimals: int) -> str:
    # SI style: thousands apart by a space, only from five digits on (so 4000 ms stays 4000 ms).
    text = f"{number:,.{decimals}f}"
    return text.replace(",", " ") if abs(number) >= 10_000 else text.replace(",", "")


def ms_text(value_ms: float | None) -> str:
    """A duration in milliseconds: ``"23 530 ms"``, ``"11 ms"``, ``"0.8 ms"``; ``"n/a"`` for no value."""
    if value_ms is None or is_missing(value_ms):
        return "n/a"
    return f"{_grouped(value_ms, 0 if abs(value_ms) >= 10 else 1)} ms"


def percent_text(percent: float | None) -> str:
    """A percentage (0-100) with one decimal: ``"82.2%"``; ``"n/a"`` for no value."""
    return "n/a" if percent is None or is_missing(percent) else f"{percent:.1f}%"


def value_text(value: float | None, unit: str) -> str:
    """A measured value with its unit, as the KPI table's ``unit`` column names it (ms, %, tasks/min, ...)."""
    if value is None or is_missing(value):
        return "n/a"
    if unit == "ms":
        return ms_text(value)
    if unit == "%":
        return percent_text(value)
    return f"{value:.1f} {unit}" if abs(value) < 10_000 else f"{_grouped(value, 0)} {unit}"


def verdict_text(row: Mapping[Any, Any]) -> str:
    """``pass``, ``FAIL`` or ``n/a``, followed by the row's note when it has one (``n/a: why``, ``pass, small
    run: ...``)."""
    verdict = str(row.get("verdict") or "n/a")
    note = str(row.get("note") or "")
    if not note:
        return verdict
    return f"{verdict}: {note}" if verdict == "n/a" else f"{verdict}, {note}"


def compact_rows(table: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """One (KPI, value, target, verdict) row of text per KPI of a table from ``lab.analysis.kpi.evaluate``."""
    return [
        (str(row["kpi"]), value_text(row["measured"], str(row["unit"])), str(row["target"]), verdict_text(row))
        for row in table.to_dict("records")
    ]


def compact_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``compact_rows`` as a frame (columns ``COMPACT_HEADERS``, indexed by KPI): the notebooks' KPI table."""
    frame: pd.DataFrame = pd.DataFrame(compact_rows(table), columns=list(COMPACT_HEADERS)).set_index("KPI")
    return frame


_PREDICTION_LABELS = {
    "measured_mean_wait_s": "mean wait in queue, measured",
    "mmc_mean_wait_s": "mean wait in queue, M/M/c",
    "mgc_mean_wait_s": "mean wait in queue, M/G/c",
    "utilization": "offered utilization",
    "service_mean_s": "mean service time",
    "service_cv2": "service time cv²",
}


def prediction_rows(prediction: Mapping[str, float]) -> dict[str, str]:
    """A queueing prediction (``lab.charts.wait_prediction``: seconds and a fraction) as labelled text in ms and
    percent."""
    rows = {}
    for key, label in _PREDICTION_LABELS.items():
        value = prediction.get(key)
        if key.endswith("_s"):
            rows[label] = ms_text(None if value is None else 1000 * value)
        elif key == "utilization":
            rows[label] = percent_text(None if value is None else 100 * value)
        else:
            rows[label] = "n/a" if value is None or is_missing(value) else f"{value:.3f}"
    return rows
