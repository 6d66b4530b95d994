"""Charts and figures across load: latency distributions, latency and throughput against load or workers,
and measured waits against the M/M/c and M/G/c queueing predictions. Latencies and waits are drawn in ms,
utilizations in percent; each chart names the runs it shows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lab.analysis import kpi, queueing, steady
from lab.analysis.display import ms_text
from lab.charts.data import service_times_s, waits_s
from lab.charts.style import (
    BAND_COLOUR,
    BUSY_HIGH,
    BUSY_LOW,
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

_X_LABELS = {
    "target_utilization": "target utilization (% of capacity)",
    "rate_per_s": "offered arrival rate (tasks/s)",
    "workers": "workers",
    "work_seconds": "work per task (s)",
}


def latency_cdf(
    runs: pd.DataFrame | Mapping[str, pd.DataFrame],
    limit_s: float = kpi.LATENCY_TARGET_S,
    *,
    run_id: str | None = None,
) -> Figure:
    """Empirical CDF of end-to-end latency in ms (delivered minus submitted, answered tasks) for one task frame
    or several labelled ones, with the p50, p95 and p99 of each marked and the latency target (``limit_s``,
    drawn in ms); ``run_id`` names the run (or runs) in the title."""
    frames = {"latency": runs} if isinstance(runs, pd.DataFrame) else dict(runs)
    figure, (ax,) = new_figure()
    titled(ax, "End-to-end latency, cumulative distribution", run_name(run_id))
    ax.set_xlabel("latency: delivered - submitted (ms)")
    ax.set_ylabel("answered tasks (%)")
    percent_ticks(ax.yaxis)
    drawn = False
    for index, (label, tasks) in enumerate(frames.items()):
        values = np.sort(kpi.latency_s(tasks).to_numpy(dtype="float64") * 1000)
        if not len(values):
            continue
        drawn = True
        share = 100 * np.arange(1, len(values) + 1) / len(values)
        (line,) = ax.step(values, share, where="post", label=f"{label} (n={len(values)})")
        marks = kpi.percentiles(values.tolist())
        for name in ("p50", "p95", "p99"):
            q = kpi.PERCENTILES[name]
            ax.plot([marks[name]], [q], "o", color=line.get_color())
            ax.annotate(
                f"{name} {ms_text(marks[name])}",
                (marks[name], q),
                textcoords="offset points",
                xytext=(5, -10 - 9 * index),  # one label row per series, so they do not overlap
                fontsize="x-small",
                color=line.get_color(),
            )
    if not drawn:
        no_data(ax)
    ax.axvline(limit_s * 1000, color=TARGET_COLOUR, linestyle="--", label=f"target {ms_text(limit_s * 1000)}")
    ax.set_ylim(0, 105)
    legend(ax)
    return figure


def latency_vs_load(runs: Sequence[Run], x: str = "target_utilization") -> Figure:
    """p50, p95 and p99 latency (ms) of each run against ``run.params[x]`` (runs without it are left out; a
    utilization in percent), with the 15 000 ms target (and the 70-80% band when x is a utilization)."""
    figure, (ax,) = new_figure()
    shown = [run for run in runs if run.params.get(x) is not None]
    titled(ax, "Latency against load", runs_name([run.run_id for run in shown]))
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel("latency (ms)")
    scale = 100.0 if "utilization" in x else 1.0
    if "utilization" in x:
        percent_ticks(ax.xaxis)
    elif x == "workers":
        integer_ticks(ax.xaxis)
    points = sorted(
        (scale * float(run.params[x]), kpi.percentiles((kpi.latency_s(run.tasks) * 1000).tolist())) for run in shown
    )
    points = [(load, p) for load, p in points if not math.isnan(p["p50"])]
    if not points:
        no_data(ax)
    for name in ("p50", "p95", "p99"):
        if points:
            ax.plot([load for load, _ in points], [p[name] for _, p in points], "o-", label=name)
    limit_ms = kpi.LATENCY_TARGET_S * 1000
    ax.axhline(limit_ms, color=TARGET_COLOUR, linestyle="--", label=f"target {ms_text(limit_ms)}")
    if "utilization" in x:
        ax.axvspan(BUSY_LOW, BUSY_HIGH, color=BAND_COLOUR, alpha=0.15, label="target utilization")
    ax.set_ylim(bottom=0)
    legend(ax)
    return figure


def scaling(runs: Sequence[Run]) -> Figure:
    """Measured answered tasks per minute against workers, with the ideal capacity workers / mean service
    time (pooled over the runs), the offered rate where known, and the KPI "N tasks/min for N workers"."""
    figure, (ax,) = new_figure()
    titled(ax, "Throughput against workers", runs_name([run.run_id for run in runs]))
    ax.set_xlabel("workers")
    ax.set_ylabel("answered tasks per minute")
    integer_ticks(ax.xaxis)
    # Over the run's window, not the sending time: under overload the backlog drains after the last send,
    # and answers per sending time would report the offered rate instead of the capacity.
    measured = [(run.workers, kpi.throughput_per_min(run.tasks), run.params.get("rate_per_s")) for run in runs]
    measured = [(w, t, r) for w, t, r in measured if not math.isnan(t)]
    if not measured:
        no_data(ax)
        return figure
    ax.plot([w for w, _, _ in measured], [t for _, t, _ in measured], "o", markersize=8, label="measured")
    offered = [(w, float(r) * 60) for w, _, r in measured if r is not None]
    if offered:
        ax.plot([w for w, _ in offered], [r for _, r in offered], "x", color="grey", label="offered")
    most = max(w for w, _, _ in measured)
    line = np.array([0.0, float(most) + 1])
    service = pd.concat([service_times_s(run.tasks) for run in runs])
    if len(service) and float(service.mean()) > 0:
        mean = float(service.mean())
        ax.plot(line, line * 60 / mean, "--", color="tab:blue", label=f"ideal: workers x 60 / {mean:.1f} s")
    ax.plot(line, line, ":", color=TARGET_COLOUR, label="KPI: N tasks/min for N workers")
    ax.set_xlim(0, most + 1)
    ax.set_ylim(bottom=0)
    legend(ax)
    return figure


def _run_utilization(run: Run, service_mean_s: float) -> float:
    """The run's offered utilization: rate_per_s x mean service / workers, else params target_utilization."""
    rate = run.params.get("rate_per_s")
    if rate is not None:
        return queueing.utilization(float(rate), service_mean_s, run.workers)
    target = run.params.get("target_utilization")
    return math.nan if target is None else float(target)


def wait_prediction(run: Run) -> dict[str, float]:
    """Measured mean wait (first assigned - submitted) of a run next to the M/M/c and M/G/c predictions for
    its workers, offered rate (``params["rate_per_s"]``) and measured service times (finished - assigned).

    Keys: measured_mean_wait_s, mmc_mean_wait_s, mgc_mean_wait_s, utilization, service_mean_s, service_cv2.
    Predictions are NaN at utilization >= 1, where no steady state exists; so is a measurement with no
    assigned task. Raises ValueError without ``rate_per_s`` or with fewer than two answered tasks.
    """
    rate = run.params.get("rate_per_s")
    if rate is None:
        raise ValueError(f"run {run.run_id} has no rate_per_s in its params: the prediction needs the offered rate")
    service = service_times_s(run.tasks)
    try:
        mean, cv2 = queueing.service_stats(service.tolist())
    except ValueError as e:
        raise ValueError(f"run {run.run_id}: cannot measure the service time: {e}") from e
    rho = queueing.utilization(float(rate), mean, run.workers)
    waits = waits_s(run.tasks)
    result = {
        "measured_mean_wait_s": float(waits.mean()) if len(waits) else math.nan,
        "mmc_mean_wait_s": math.nan,
        "mgc_mean_wait_s": math.nan,
        "utilization": rho,
        "service_mean_s": mean,
        "service_cv2": cv2,
    }
    if rho < 1:
        result["mmc_mean_wait_s"] = queueing.mmc(float(rate), mean, run.workers).mean_wait_s
        result["mgc_mean_wait_s"] = queueing.mgc(float(rate), mean, cv2, run.workers).mean_wait_s
    return result


def wait_vs_prediction(runs: Sequence[Run]) -> Figure:
    """Measured mean wait (ms) of each run against its utilization (%), with the M/M/c and M/G/c (measured
    cv²) mean-wait curves for each worker count among the runs and the 70-80% utilization band."""
    figure, (ax,) = new_figure()
    titled(ax, "Mean wait: measured against queueing predictions", runs_name([run.run_id for run in runs]))
    ax.set_xlabel("utilization (offered load / capacity, %)")
    ax.set_ylabel("mean wait: first assigned - submitted (ms)")
    percent_ticks(ax.xaxis)
    ax.axvspan(BUSY_LOW, BUSY_HIGH, color=BAND_COLOUR, alpha=0.15, label="target utilization")
    by_workers: dict[int, list[Run]] = {}
    for run in runs:
        by_workers.setdefault(run.workers, []).append(run)
    tops: list[float] = []
    rho_grid = np.linspace(0.01, 0.98, 98)
    for workers, group in sorted(by_workers.items()):
        service = pd.concat([service_times_s(run.tasks) for run in group]).tolist()
        if len(service) < 2 or sum(service) <= 0:
            continue
        mean, cv2 = queueing.service_stats(service)
        points = [(_run_utilization(run, mean), waits_s(run.tasks).mean()) for run in group]
        points = [(u, float(w)) for u, w in points if not (math.isnan(u) or pd.isna(w))]
        (dots,) = ax.plot(
            [100 * u for u, _ in points], [1000 * w for _, w in points], "o", markersize=8, label=f"{workers} measured"
        )
        capacity = queueing.capacity_per_s(workers, mean)
        mmc = [1000 * queueing.mmc(rho * capacity, mean, workers).mean_wait_s for rho in rho_grid]
        mgc = [1000 * queueing.mgc(rho * capacity, mean, cv2, workers).mean_wait_s for rho in rho_grid]
        ax.plot(100 * rho_grid, mmc, "--", color=dots.get_color(), label=f"{workers} M/M/c")
        ax.plot(100 * rho_grid, mgc, "-", color=dots.get_color(), label=f"{workers} M/G/c, cv² {cv2:.2f}")
        # The curves run off to infinity near rho = 1; scale to the measurements and the target band instead.
        tops += [1000 * w for _, w in points] + [1000 * queueing.mmc(0.9 * capacity, mean, workers).mean_wait_s]
    if not tops:
        no_data(ax)
    else:
        ax.set_ylim(0, max(tops) * 1.2 or 1.0)
    ax.set_xlim(0, 100)
    legend(ax)
    return figure


def steady_waits(runs: Sequence[Run]) -> Figure:
    """Measured mean wait in queue (ms, warm-up trimmed, 95% batch-means interval) of each run against its
    realized utilization, next to the M/G/c prediction +-10% (``lab.analysis.steady``); below, measured over
    predicted with the 0.9-1.1 band. Runs not at steady state are hollow and labelled."""
    figure, (ax, ratio_ax) = new_figure(2, height=7.0, ratios=[3, 2])
    titled(ax, "Mean wait: measured against M/G/c", runs_name([run.run_id for run in runs]))
    ax.set_ylabel("mean wait in queue (ms, log)")
    ratio_ax.set_ylabel("measured / predicted")
    ratio_ax.set_xlabel("realized utilization (arrival rate x mean service / workers, %)")
    percent_ticks(ratio_ax.xaxis)
    states = [steady.assess_tasks(run.tasks, run.workers) for run in runs if len(service_times_s(run.tasks)) >= 2]
    shown = [s for s in states if s.predicted_wait_s > 0 and s.mean_wait_s > 0]
    if not shown:
        no_data(ax)
        return figure
    low, high = 1 - steady.TOLERANCE, 1 + steady.TOLERANCE
    ratio_ax.axhspan(low, high, color=BAND_COLOUR, alpha=0.15, label=f"within {steady.TOLERANCE:.0%}")
    ratio_ax.axhline(1.0, color="grey", linewidth=0.8)
    for index, state in enumerate(shown):
        x = 100 * state.utilization
        face = "tab:blue" if state.steady else "none"
        ms_values = [1000 * state.mean_wait_s, 1000 * state.ci_low_s, 1000 * state.ci_high_s]
        error = [[max(ms_values[0] - ms_values[1], 0)], [max(ms_values[2] - ms_values[0], 0)]]
        first = index == 0
        ax.errorbar(
            [x - 0.6],
            [ms_values[0]],
            yerr=error,
            fmt="o",
            color="tab:blue",
            mfc=face,
            capsize=4,
            label="measured, 95% interval" if first else None,
        )
        predicted = 1000 * state.predicted_wait_s
        ax.errorbar(
            [x + 0.6],
            [predicted],
            yerr=[[predicted * steady.TOLERANCE], [predicted * steady.TOLERANCE]],
            fmt="x",
            color="tab:orange",
            capsize=4,
            label="M/G/c predicted +-10%" if first else None,
        )
        ax.plot(
            [x + 0.6], [1000 * state.allen_cunneen_wait_s], "+", color="grey", label="Allen-Cunneen" if first else None
        )
        if not state.steady:
            ax.annotate("not steady", (x, ms_values[0]), textcoords="offset points", xytext=(6, 6), fontsize="x-small")
        ratio = [s / state.predicted_wait_s for s in (state.mean_wait_s, state.ci_low_s, state.ci_high_s)]
        ratio_ax.errorbar(
            [x],
            [ratio[0]],
            yerr=[[max(ratio[0] - ratio[1], 0)], [max(ratio[2] - ratio[0], 0)]],
            fmt="o",
            color="tab:blue",
            mfc=face,
            capsize=4,
            label="measured / predicted, 95% interval" if first else None,
        )
    ax.set_yscale("log")
    ax.set_xlim(0, 100)
    ratio_ax.set_ylim(0, max(2.0, *(s.ci_high_s / s.predicted_wait_s * 1.1 for s in shown if s.ci_high_s > 0)))
    legend(ax)
    legend(ratio_ax)
    return figure
