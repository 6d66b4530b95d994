"""Charts of fleets that change size (an autoscaler's runs): workers, utilization and latency over time, and
fixed against autoscaled fleets side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lab.analysis import fleet
from lab.charts.style import (
    BAND_COLOUR,
    TARGET_COLOUR,
    integer_ticks,
    legend,
    new_figure,
    no_data,
    percent_ticks,
    run_name,
    runs_name,
    titled,
)
from lab.runs import Run

BIN_S = 5.0
DECISION_COLOURS = {"up": "tab:green", "down": "tab:purple", "hold": "tab:gray"}


def autoscaling(
    run: Run, *, band: tuple[float, float] = (0.70, 0.80), latency_target_s: float = 15.0, bin_s: float = BIN_S
) -> Figure:
    """Three panels over time: workers up and busy (with the load and the autoscaler's decisions), utilization
    against the `band`, and latency p95 against `latency_target_s`."""
    figure, (workers_ax, share_ax, latency_ax) = new_figure(rows=3, height=9.0, ratios=[1.3, 1, 1])
    titled(workers_ax, "Workers following the load", run_name(run.run_id))
    lines = fleet.timeline(run.tasks, run.worker_events, bin_s)
    if lines.empty:
        for ax in (workers_ax, share_ax, latency_ax):
            no_data(ax)
        return figure
    t = lines["t_s"].to_numpy(dtype="float64") + bin_s / 2
    workers_ax.step(t, lines["workers"], where="mid", color="tab:blue", linewidth=2, label="workers up")
    workers_ax.step(t, lines["busy"], where="mid", color="tab:orange", label="busy (mean)")
    workers_ax.set_ylabel("workers")
    workers_ax.set_ylim(bottom=0)
    integer_ticks(workers_ax.yaxis)
    load_ax = workers_ax.twinx()
    load_ax.plot(t, lines["arrivals_per_s"], color="tab:gray", alpha=0.5, linestyle=":", label="questions/s")
    load_ax.set_ylabel("questions per second")
    load_ax.set_ylim(bottom=0)
    _decisions(workers_ax, run)
    legend(workers_ax)

    low, high = band
    share_ax.axhspan(100 * low, 100 * high, color=BAND_COLOUR, alpha=0.15, label=f"target {low:.0%}-{high:.0%}")
    share_ax.plot(t, 100 * lines["utilization"], color="tab:orange", marker=".", label="busy / up")
    share_ax.set_ylabel("utilization")
    share_ax.set_ylim(0, 105)
    percent_ticks(share_ax.yaxis)
    legend(share_ax)

    latency_ax.axhline(latency_target_s, color=TARGET_COLOUR, linestyle="--", label=f"target {latency_target_s:g} s")
    latency_ax.plot(t, lines["latency_p95_s"], color="tab:blue", marker=".", label="p95 of questions asked then")
    latency_ax.set_ylabel("latency (s)")
    latency_ax.set_xlabel("time since first question (s)")
    latency_ax.set_ylim(bottom=0)
    legend(latency_ax)
    return figure


def _decisions(ax: Axes, run: Run) -> None:
    """The autoscaler's changes of target as marks on the workers panel."""
    decisions = run.scaling
    if decisions.empty or run.tasks.empty:
        return
    start = fleet.run_start_ms(run.tasks)
    changes = decisions[decisions["direction"] != "hold"]
    if changes.empty:
        return
    at = (pd.to_numeric(changes["timestamp"]).to_numpy(dtype="float64") - start) / 1000
    for direction, colour in DECISION_COLOURS.items():
        mine = (changes["direction"] == direction).to_numpy()
        if mine.any():
            ax.scatter(
                at[mine],
                changes["target"].to_numpy(dtype="float64")[mine],
                marker="^" if direction == "up" else "v",
                color=colour,
                zorder=3,
                label=f"decided: {direction}",
            )


def fleets(runs: Sequence[Run], *, latency_target_s: float = 15.0, band: tuple[float, float] = (0.70, 0.80)) -> Figure:
    """Fixed against autoscaled fleets: worker-seconds used, latency p95 against its target and utilization
    against its band, one bar per run (named by its label)."""
    figure, (cost_ax, latency_ax, share_ax) = new_figure(rows=3, height=8.0)
    titled(cost_ax, "What each fleet cost and kept", runs_name([r.run_id for r in runs]))
    if not runs:
        for ax in (cost_ax, latency_ax, share_ax):
            no_data(ax)
        return figure
    names = [str(r.params.get("fleet", r.run_id)) for r in runs]
    figures = [fleet.summary(r.tasks, r.worker_events, band=band, latency_target_s=latency_target_s) for r in runs]
    x = np.arange(len(runs))
    cost_ax.bar(x, [f["worker_seconds"] for f in figures], color="tab:blue")
    cost_ax.set_ylabel("worker-seconds")
    latency_ax.bar(x, [f["latency_p95_s"] for f in figures], color="tab:orange")
    latency_ax.axhline(latency_target_s, color=TARGET_COLOUR, linestyle="--", label=f"target {latency_target_s:g} s")
    latency_ax.set_ylabel("latency p95 (s)")
    legend(latency_ax)
    low, high = band
    share_ax.axhspan(100 * low, 100 * high, color=BAND_COLOUR, alpha=0.15, label=f"target {low:.0%}-{high:.0%}")
    share_ax.bar(x, [100 * f["utilization"] for f in figures], color="tab:green")
    share_ax.set_ylabel("utilization")
    share_ax.set_ylim(0, 105)
    percent_ticks(share_ax.yaxis)
    legend(share_ax)
    for ax in (cost_ax, latency_ax, share_ax):
        ax.set_xticks(x, names)
    return figure
