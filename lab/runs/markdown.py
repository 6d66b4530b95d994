"""A KPI table (``lab.analysis.kpi.evaluate``) as a Markdown document (a run's ``kpi.md``): the verdicts with their
values in ms and percent, how each was measured, the rules that decide pass, FAIL and n/a, and the breakdown by
worker language."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lab.analysis.display import is_missing, ms_text, percent_text, value_text, verdict_text
from lab.analysis.verdicts import RULES

__all__ = ["kpi_markdown", "language_markdown"]

_LANGUAGE_HEADERS = {
    "language": "Language",
    "workers": "Workers",
    "answered": "Answered",
    "utilization": "Utilization",
    "latency_p50_ms": "Latency p50",
    "latency_p95_ms": "Latency p95",
    "processing_p50_ms": "Processing p50",
    "processing_p95_ms": "Processing p95",
}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "pass" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.4g}"
    # A pipe would end the cell early; newlines would end the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def language_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The breakdown by worker language (``lab.analysis.languages.breakdown_records``) as a Markdown section;
    "" when the run had fewer than two languages (the KPI table is then that language's)."""
    if len(rows) < 2:
        return ""
    lines = [
        "## By worker language",
        "",
        "Utilization is busy over online time of the language's workers; latency and processing time are of the "
        "tasks they answered.",
        "",
        "| " + " | ".join(_LANGUAGE_HEADERS.values()) + " |",
        "|" + "---|" * len(_LANGUAGE_HEADERS),
    ]
    for row in rows:
        value = {k: row.get(k) for k in _LANGUAGE_HEADERS}
        busy = value["utilization"]
        value["utilization"] = "n/a" if busy is None or is_missing(busy) else percent_text(100 * busy)
        for key in ("latency_p50_ms", "latency_p95_ms", "processing_p50_ms", "processing_p95_ms"):
            value[key] = ms_text(value[key])
        lines.append("| " + " | ".join(_cell(value[k]) for k in _LANGUAGE_HEADERS) + " |")
    return "\n".join(lines) + "\n"


def kpi_markdown(
    table: pd.DataFrame, title: str = "KPIs", by_language: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """The KPI table (from ``lab.analysis.kpi.evaluate``) as a Markdown document: one row per KPI (value with its
    unit, target, verdict with its reason, how it was measured, percentiles), the rules behind the verdicts,
    then the breakdown by worker language when the run had several (`by_language`, by default the table's
    ``attrs``)."""
    headers = ["KPI", "Measured", "Target", "Verdict", "How", "Detail"]
    lines = [f"# {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.to_dict("records"):
        measured = value_text(row["measured"], str(row["unit"]))
        cells = [row["kpi"], measured, row["target"], verdict_text(row), row["how"], row["detail"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## How the verdicts are given", "", *(f"- {rule}" for rule in RULES)]
    text = "\n".join(lines) + "\n"
    languages = language_markdown(table.attrs.get("by_language", []) if by_language is None else by_language)
    return text + ("\n" + languages if languages else "")
