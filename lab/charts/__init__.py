"""Charts of runs (``lab.runs.Run``) and their frames (``lab.runs.schema``): throughput, latency, utilization,
queue depth, scaling, autoscaled fleets, faults, queueing predictions and worker languages, each a
``matplotlib.figure.Figure``.

Figures are made without pyplot, so no global state is touched and they render headless; in Jupyter a
returned figure displays itself. Times on x axes are seconds since the run's first submission; latencies
are drawn in ms and fractions in percent, as in the KPI table, with targets in those units; counts have
whole-number ticks; each chart names its run (``run_id=``) or runs on the right of its title. Empty frames
give a chart with a "no data" note; tasks missing a timestamp a chart needs are left out of it.

The charts over time are in ``timeline``, those across runs and loads in ``across_load``; ``files`` saves a
run's charts; the shared pieces are in ``style`` and ``data``. Charts sit above ``lab.runs``: a run saves
its data, and whoever wants its charts calls ``save_charts`` (or ``save_run`` for both).
"""

from __future__ import annotations

from lab.charts.across_load import (
    latency_cdf,
    latency_vs_load,
    scaling,
    steady_waits,
    wait_prediction,
    wait_vs_prediction,
)
from lab.charts.data import service_times_s, waits_s
from lab.charts.failover import failover
from lab.charts.files import save_charts, save_run
from lab.charts.fleet import autoscaling, fleets
from lab.charts.languages import LANGUAGE_COLOURS, by_language, languages_benchmark
from lab.charts.style import DPI
from lab.charts.timeline import ROLLING_S, fault_timeline, queue_depth, throughput, utilization_timeline

__all__ = [
    "DPI",
    "LANGUAGE_COLOURS",
    "ROLLING_S",
    "autoscaling",
    "by_language",
    "failover",
    "fault_timeline",
    "fleets",
    "languages_benchmark",
    "latency_cdf",
    "latency_vs_load",
    "queue_depth",
    "save_charts",
    "save_run",
    "scaling",
    "service_times_s",
    "steady_waits",
    "throughput",
    "utilization_timeline",
    "wait_prediction",
    "wait_vs_prediction",
    "waits_s",
]
