"""A KPI table (``lab.analysis.kpi.evaluate``) as a Markdown document."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["kpi_markdown"]


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
    """The KPI table (from ``lab.analysis.kpi.evaluate``) as a Markdown document."""
    headers = ["KPI", "Measured", "Unit", "Target", "Result", "How", "Detail"]
    lines = [f"# {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.itertuples(index=False):
        cells = [row.kpi, row.measured, row.unit, row.target, row.passed, row.how, row.detail]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
