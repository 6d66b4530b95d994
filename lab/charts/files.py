"""A run's charts as PNG files next to its data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from lab.charts.across_load import latency_cdf
from lab.charts.fleet import autoscaling
from lab.charts.style import DPI
from lab.charts.timeline import fault_timeline, queue_depth, throughput, utilization_timeline
from lab.paths import RUNS_DIR
from lab.runs import CHARTS_DIR, Run

__all__ = ["save_charts", "save_run"]


def save_charts(run: Run, folder: Path) -> list[Path]:
    """Write the single-run charts as PNG into ``folder`` (throughput, latency_cdf, utilization_timeline,
    queue_depth, fault_timeline when ``params["faults"]``, and workers over time (``autoscaling``) for a run of a
    fleet experiment, ``params["fleet"]``) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    faults = run.params.get("faults") or []
    charts: dict[str, Callable[[], Figure]] = {
        "throughput": lambda: throughput(run.tasks, run.workers, run_id=run.run_id),
        "latency_cdf": lambda: latency_cdf(run.tasks, run_id=run.run_id),
        "utilization_timeline": lambda: utilization_timeline(run.worker_events, run.tasks, run_id=run.run_id),
        "queue_depth": lambda: queue_depth(run.tasks, run_id=run.run_id),
    }
    if run.params.get("fleet"):
        charts["fleet"] = lambda: autoscaling(run)
    if faults:
        charts["fault_timeline"] = lambda: fault_timeline(run.tasks, run.worker_events, faults, run_id=run.run_id)
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


def save_run(run: Run, root: Path = RUNS_DIR, *, overwrite: bool = False) -> Path:
    """Save the run's data (``Run.save``), then its charts in ``charts/``; return the run's folder."""
    folder = run.save(root, overwrite=overwrite)
    # Charts come after the data: they are drawn from it, so a chart that fails loses nothing.
    save_charts(run, folder / CHARTS_DIR)
    return folder
