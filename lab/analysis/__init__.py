"""Figures from measured data, with no I/O: the KPIs of a run with their verdicts (`verdicts`) and their text in
ms and percent (`display`), queueing-theory predictions, percentiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab._lazy import lazy_exports

if TYPE_CHECKING:
    from lab.analysis.kpi import KPI_NAMES, evaluate
    from lab.analysis.languages import breakdown
    from lab.analysis.queueing import erlang_c, mgc, mmc
    from lab.analysis.stats import percentile

__all__ = ["KPI_NAMES", "breakdown", "erlang_c", "evaluate", "mgc", "mmc", "percentile"]

__getattr__ = lazy_exports(
    __name__,
    {
        "KPI_NAMES": "kpi",
        "evaluate": "kpi",
        "breakdown": "languages",
        "erlang_c": "queueing",
        "mgc": "queueing",
        "mmc": "queueing",
        "percentile": "stats",
    },
)
