"""A KPI table (``lab.analysis.kpi.evaluate``) as a Markdown document, with its breakdown by worker language."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["kpi_markdown", "language_markdown"]

_LANGUAGE_HEADERS = {
    "language": "Language",
    "workers": "Workers",
    "answered": "Answered",
    "utilization": "Utilization",
    "latency_p50_s": "Latency p50 (s)",
    "latency_p95_s": "Latency p95 (s)",
    "processing_p50_ms": "Processing p50 (ms)",
    "processing_p95_ms": "Processing p95 (ms)",
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
        if isinstance(value["utilization"], float) and not math.isnan(value["utilization"]):
            value["utilization"] = f"{value['utilization']:.0%}"
        lines.append("| " + " | ".join(_cell(value[k]) for k in _LANGUAGE_HEADERS) + " |")
    return "\n".join(lines) + "\n"


def kpi_markdown(
    table: pd.DataFrame, title: str = "KPIs", by_language: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """The KPI table (from ``lab.analysis.kpi.evaluate``) as a Markdown document, followed by the breakdown by
    worker language when the run had several (`by_language`, by default the table's ``attrs``)."""
    headers = ["KPI", "Measured", "Unit", "Target", "Result", "How", "Detail"]
    lines = [f"# {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.itertuples(index=False):
        cells = [row.kpi, row.measured, row.unit, row.target, row.passed, row.how, row.detail]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    text = "\n".join(lines) + "\n"
    languages = language_markdown(table.attrs.get("by_language", []) if by_language is None else by_language)
    return text + ("\n" + languages if languages else "")
