"""Charts of runs with a master failover (standby masters): questions accepted and answered over time, with each
fault and the time until questions were accepted again marked."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lab.analysis.failover import counts_over_time, fault_effects
from lab.analysis.series import per_second
from lab.charts.style import integer_ticks, legend, new_figure, no_data, run_name, titled

OUTAGE_COLOUR = "tab:red"


def failover(tasks: pd.DataFrame, faults: Sequence[Mapping[str, Any]] = (), *, run_id: str | None = None) -> Figure:
    """Two panels over time: questions accepted and answered (cumulative), and accepted per second; each fault a
    vertical line, shaded until the first question accepted after it (the outage users saw)."""
    figure, (total_ax, rate_ax) = new_figure(rows=2, height=7.0, ratios=[1.4, 1])
    titled(total_ax, "Questions through a failover", run_name(run_id))
    counts = counts_over_time(tasks)
    if counts.empty:
        for ax in (total_ax, rate_ax):
            no_data(ax)
        return figure
    total_ax.step(counts["t_s"], counts["accepted"], where="post", color="tab:blue", label="accepted")
    total_ax.step(counts["t_s"], counts["answered"], where="post", color="tab:green", label="answered")
    total_ax.set_ylabel("questions (cumulative)")
    integer_ticks(total_ax.yaxis)
    seconds = per_second(tasks)
    rate_ax.bar(seconds.index, seconds["submitted"], width=1.0, align="edge", color="tab:blue", alpha=0.6)
    rate_ax.set_ylabel("accepted per second")
    rate_ax.set_xlabel("time since first submission (s)")
    integer_ticks(rate_ax.yaxis)
    for row in fault_effects(tasks, faults).to_dict("records"):
        at_s, again_s = float(row["at_s"]), float(row["accepted_again_s"])
        for ax in (total_ax, rate_ax):
            ax.axvline(at_s, color=OUTAGE_COLOUR, linestyle="--", linewidth=1)
            if not math.isnan(again_s):
                ax.axvspan(at_s, at_s + again_s, color=OUTAGE_COLOUR, alpha=0.12)
        again = "never" if math.isnan(again_s) else f"{again_s:.1f} s"
        total_ax.annotate(
            f"{row['action']} ({row['target']})\naccepted again after {again}",
            (at_s, float(np.nanmax(counts["accepted"])) * 0.95),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=8,
            va="top",
            color=OUTAGE_COLOUR,
        )
    legend(total_ax)
    return figure
