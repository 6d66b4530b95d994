"""Charts of runs (``lab.runs.Run``) and their frames (``lab.collect``): throughput, latency, utilization,
queue depth, scaling, faults and queueing predictions, each a ``matplotlib.figure.Figure``.

Figures are made without pyplot, so no global state is touched and they render headless; in Jupyter a
returned figure displays itself. Times on x axes are seconds since the run's first submission. Empty
frames give a chart with a "no data" note; tasks missing a timestamp a chart needs are left out of it.

This module gathers the charts of ``lab.charts_time`` and ``lab.charts_load`` under one name and saves a
run's charts; the shared pieces are in ``lab.chart_style`` and ``lab.chart_data``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from lab.chart_data import service_times_s, waits_s
from lab.chart_style import DPI
from lab.charts_load import latency_cdf, latency_vs_load, scaling, wait_prediction, wait_vs_prediction
from lab.charts_time import ROLLING_S, fault_timeline, queue_depth, throughput, utilization_timeline

if TYPE_CHECKING:
    from lab.runs import Run

__all__ = [
    "DPI",
    "ROLLING_S",
    "fault_timeline",
    "latency_cdf",
    "latency_vs_load",
    "queue_depth",
    "save_charts",
    "scaling",
    "service_times_s",
    "throughput",
    "utilization_timeline",
    "wait_prediction",
    "wait_vs_prediction",
    "waits_s",
]


def save_charts(run: Run, folder: Path) -> list[Path]:
    """Write the single-run charts as PNG into ``folder`` (throughput, latency_cdf, utilization_timeline,
    queue_depth, and fault_timeline when ``params["faults"]``) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    faults = run.params.get("faults") or []
    charts: dict[str, Callable[[], Figure]] = {
        "throughput": lambda: throughput(run.tasks, run.workers),
        "latency_cdf": lambda: latency_cdf(run.tasks),
        "utilization_timeline": lambda: utilization_timeline(run.worker_events, run.tasks),
        "queue_depth": lambda: queue_depth(run.tasks),
    }
    if faults:
        charts["fault_timeline"] = lambda: fault_timeline(run.tasks, run.worker_events, faults)
    else:
        # A re-saved run must not keep the fault chart of an earlier save.
        (folder / "fault_timeline.png").unlink(missing_ok=True)
    paths = []
    for name, make in charts.items():
        figure = make()
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=DPI)
        # Not pyplot figures, so nothing holds them once cleared and dropped.
        figure.clear()
        paths.append(path)
    return paths
