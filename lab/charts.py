"""Charts of runs (``lab.runs.Run``) and their frames (``lab.collect``): throughput, latency, utilization,
queue depth, scaling, faults and queueing predictions, each a ``matplotlib.figure.Figure``.

Figures are made without pyplot, so no global state is touched and they render headless; in Jupyter a
returned figure displays itself. Times on x axes are seconds since the run's first submission. Empty
frames give a chart with a "no data" note; tasks missing a timestamp a chart needs are left out of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lab import kpi, queueing

if TYPE_CHECKING:
    from lab.runs import Run

DPI = 110
ROLLING_S = 10
_BUSY_LOW, _BUSY_HIGH = kpi.BUSY_TARGET
_TARGET_COLOUR = "tab:red"
_BAND_COLOUR = "tab:green"
_X_LABELS = {
    "target_utilization": "target utilization (fraction of capacity)",
    "rate_per_s": "offered arrival rate (tasks/s)",
    "workers": "workers",
    "work_seconds": "work per task (s)",
}


def _ms(frame: pd.DataFrame, column: str) -> pd.Series:
    # Nullable Int64 or object columns with None: float gives NaN for unknown, fit for arithmetic.
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def _origin_ms(tasks: pd.DataFrame | None) -> float:
    """The first submission in ms, NaN when no task has one."""
    if tasks is None or tasks.empty:
        return math.nan
    return float(_ms(tasks, "submitted").min())


def _figure(rows: int = 1, height: float = 4.5, ratios: Sequence[float] | None = None) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(9, height), layout="constrained")
    spec = figure.add_gridspec(rows, 1, height_ratios=ratios)
    axes = [figure.add_subplot(spec[i, 0]) for i in range(rows)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    return figure, axes


def _no_data(ax: Axes, note: str = "no data") -> None:
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="grey", fontsize=14)


def _legend(ax: Axes) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(loc="best", fontsize="small")


def service_times_s(tasks: pd.DataFrame) -> pd.Series:
    """Service time of each answered task in seconds: finished minus assigned (how long it held a worker),
    else the worker's processing_time_ms; tasks with neither are left out."""
    answered = tasks[tasks["outcome"] == "answered"]
    held = (_ms(answered, "finished") - _ms(answered, "assigned")) / 1000
    fallback = _ms(answered, "processing_time_ms") / 1000
    times: pd.Series = held.where(held.notna(), fallback).dropna()
    return times[times >= 0]


def waits_s(tasks: pd.DataFrame) -> pd.Series:
    """Per task: seconds from submission to its first assignment; tasks never assigned are left out."""
    if tasks.empty:
        return pd.Series(dtype="float64")
    stamps = pd.DataFrame(
        {"task_id": tasks["task_id"], "submitted": _ms(tasks, "submitted"), "assigned": _ms(tasks, "assigned")}
    )
    # One row per task in collector frames, but frames with a row per attempt keep the first assignment.
    first = stamps.groupby("task_id", sort=False).min()
    waits: pd.Series = ((first["assigned"] - first["submitted"]) / 1000).dropna()
    return waits


def throughput(tasks: pd.DataFrame, workers: int | None = None) -> Figure:
    """Tasks submitted and answered in each second since the first submission, with a rolling mean of
    answered; with ``workers``, the KPI "N tasks/min for N workers" as a rate per second."""
    figure, (ax,) = _figure()
    ax.set_title("Throughput")
    ax.set_xlabel("time since first submission (s)")
    ax.set_ylabel("tasks per second")
    series = kpi.per_second(tasks)
    if series.empty:
        _no_data(ax)
        return figure
    seconds = series.index.to_numpy(dtype="float64")
    ax.plot(seconds, series["submitted"].to_numpy(dtype="float64"), label="submitted", color="tab:blue", alpha=0.5)
    ax.plot(seconds, series["answered"].to_numpy(dtype="float64"), label="answered", color="tab:orange", alpha=0.6)
    rolling = series["answered"].astype("float64").rolling(ROLLING_S, min_periods=1).mean()
    ax.plot(seconds, rolling.to_numpy(), label=f"answered, {ROLLING_S} s mean", color="tab:orange", linewidth=2.5)
    if workers:
        ax.axhline(workers / 60, color=_TARGET_COLOUR, linestyle="--", label=f"KPI {workers} tasks/min")
    ax.set_ylim(bottom=0)
    _legend(ax)
    return figure


def latency_cdf(runs: pd.DataFrame | Mapping[str, pd.DataFrame], limit_s: float = kpi.LATENCY_TARGET_S) -> Figure:
    """Empirical CDF of end-to-end latency (delivered minus submitted, answered tasks) for one task frame or
    several labelled ones, with the p50, p95 and p99 of each marked and the latency target."""
    frames = {"latency": runs} if isinstance(runs, pd.DataFrame) else dict(runs)
    figure, (ax,) = _figure()
    ax.set_title("End-to-end latency, cumulative distribution")
    ax.set_xlabel("latency: delivered - submitted (s)")
    ax.set_ylabel("fraction of answered tasks")
    drawn = False
    for index, (label, tasks) in enumerate(frames.items()):
        values = np.sort(kpi.latency_s(tasks).to_numpy(dtype="float64"))
        if not len(values):
            continue
        drawn = True
        fraction = np.arange(1, len(values) + 1) / len(values)
        (line,) = ax.step(values, fraction, where="post", label=f"{label} (n={len(values)})")
        marks = kpi.percentiles(values.tolist())
        for name in ("p50", "p95", "p99"):
            q = kpi.PERCENTILES[name] / 100
            ax.plot([marks[name]], [q], "o", color=line.get_color())
            ax.annotate(
                f"{name} {marks[name]:.1f} s",
                (marks[name], q),
                textcoords="offset points",
                xytext=(5, -10 - 9 * index),  # one label row per series, so they do not overlap
                fontsize="x-small",
                color=line.get_color(),
            )
    if not drawn:
        _no_data(ax)
    ax.axvline(limit_s, color=_TARGET_COLOUR, linestyle="--", label=f"target {limit_s:g} s")
    ax.set_ylim(0, 1.05)
    _legend(ax)
    return figure


def latency_vs_load(runs: Sequence[Run], x: str = "target_utilization") -> Figure:
    """p50, p95 and p99 latency of each run against ``run.params[x]`` (runs without it are left out), with
    the 15 s target (and the 70-80% utilization band when x is a utilization)."""
    figure, (ax,) = _figure()
    ax.set_title("Latency against load")
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel("latency (s)")
    points = sorted(
        (float(run.params[x]), kpi.percentiles(kpi.latency_s(run.tasks).tolist()))
        for run in runs
        if run.params.get(x) is not None
    )
    points = [(load, p) for load, p in points if not math.isnan(p["p50"])]
    if not points:
        _no_data(ax)
    for name in ("p50", "p95", "p99"):
        if points:
            ax.plot([load for load, _ in points], [p[name] for _, p in points], "o-", label=name)
    ax.axhline(kpi.LATENCY_TARGET_S, color=_TARGET_COLOUR, linestyle="--", label=f"target {kpi.LATENCY_TARGET_S:g} s")
    if "utilization" in x:
        ax.axvspan(_BUSY_LOW, _BUSY_HIGH, color=_BAND_COLOUR, alpha=0.15, label="target utilization")
    ax.set_ylim(bottom=0)
    _legend(ax)
    return figure


def _spans(events: pd.DataFrame, end_ms: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per worker: its busy spans and offline spans as (start ms, stop ms)."""
    result: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for worker_id, group in events.groupby("worker_id", sort=True):
        spans: dict[str, list[tuple[float, float]]] = {"busy": [], "offline": []}
        current: str | None = None
        since = math.nan
        for state, stamp in zip(group["state"].tolist(), group["_t"].tolist(), strict=True):
            # A repeated state continues the span (a busy worker given its next task stays one busy bar).
            if state == current:
                continue
            if current in spans:
                spans[current].append((since, stamp))
            current, since = state, stamp
        if current in spans and end_ms > since:
            spans[current].append((since, end_ms))
        result[str(worker_id)] = spans
    return result


def _busy_fraction(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Times (ms) of the state changes and the fraction of online workers busy from each on."""
    states: dict[str, str] = {}
    times: list[float] = []
    fractions: list[float] = []
    rows = zip(events["_t"].tolist(), events["worker_id"].tolist(), events["state"].tolist(), strict=True)
    for stamp, worker_id, state in rows:
        states[str(worker_id)] = str(state)
        # Changes at one instant are one change: keep only the fraction after the last of them.
        if times and times[-1] == stamp:
            times.pop()
            fractions.pop()
        online = [s for s in states.values() if s != "offline"]
        times.append(float(stamp))
        fractions.append(sum(s == "busy" for s in online) / len(online) if online else math.nan)
    return np.array(times), np.array(fractions)


def _worker_events(worker_events: pd.DataFrame) -> pd.DataFrame:
    # kpi's choice of source, so the chart shows the same states the utilization KPI is computed from.
    events = kpi._event_source(worker_events)
    stamps = _ms(events, "timestamp")
    ordered: pd.DataFrame = events.assign(_t=stamps).dropna(subset=["_t"]).sort_values("_t", kind="stable")
    return ordered


def utilization_timeline(worker_events: pd.DataFrame, tasks: pd.DataFrame | None = None) -> Figure:
    """One row per worker with its busy spans as bars and its offline spans hatched; below, the fraction of
    online workers busy over time against the 70-80% target band.

    A busy span runs from a ``busy`` event to the worker's next other state; the last state lasts until the
    last event (or task delivery). Time zero is the first submission in ``tasks``, else the first event.
    """
    figure, (gantt, busy) = _figure(rows=2, height=6, ratios=(3, 1.3))
    gantt.set_title("Worker utilization")
    gantt.set_ylabel("worker")
    busy.set_xlabel("time since first submission (s)" if tasks is not None else "time since first event (s)")
    busy.set_ylabel("fraction busy")
    events = _worker_events(worker_events)
    if events.empty:
        _no_data(gantt)
        return figure
    origin = _origin_ms(tasks)
    origin = float(events["_t"].min()) if math.isnan(origin) else origin
    end = float(events["_t"].max())
    if tasks is not None and not tasks.empty:
        last_task = pd.concat([_ms(tasks, "delivered"), _ms(tasks, "finished")]).max()
        end = end if pd.isna(last_task) else max(end, float(last_task))
    spans = _spans(events, end)
    names = list(spans)
    for kind, colour, hatch in (("busy", "tab:orange", None), ("offline", "lightgrey", "//")):
        rows = [(i, start, stop) for i, name in enumerate(names) for start, stop in spans[name][kind]]
        if rows:
            gantt.barh(
                [i for i, _, _ in rows],
                [(stop - start) / 1000 for _, start, stop in rows],
                left=[(start - origin) / 1000 for _, start, _ in rows],
                height=0.6,
                color=colour,
                hatch=hatch,
                edgecolor="grey" if hatch else None,
                label=kind,
            )
    gantt.set_yticks(range(len(names)), names)
    gantt.set_ylim(-0.7, len(names) - 0.3)
    gantt.invert_yaxis()
    _legend(gantt)
    times, fractions = _busy_fraction(events)
    busy.step((times - origin) / 1000, fractions, where="post", label="busy / online")
    busy.axhspan(_BUSY_LOW, _BUSY_HIGH, color=_BAND_COLOUR, alpha=0.2, label=f"target {_BUSY_LOW:.0%}-{_BUSY_HIGH:.0%}")
    overall = kpi.utilization(worker_events)
    if not math.isnan(overall):
        busy.axhline(overall, color="tab:purple", linestyle=":", label=f"run {overall:.0%}")
    busy.set_ylim(-0.05, 1.05)
    _legend(busy)
    return figure


def _step_counts(starts: pd.Series, stops: pd.Series, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Times and the number of intervals open from each on; a missing stop leaves the interval open to end."""
    changes = pd.concat([pd.Series(1.0, index=starts.to_numpy()), pd.Series(-1.0, index=stops.fillna(end).to_numpy())])
    # Same-instant arrivals and departures net out: no spike that never existed.
    net = changes.groupby(level=0).sum().sort_index()
    return net.index.to_numpy(dtype="float64"), net.cumsum().to_numpy(dtype="float64")


def queue_depth(tasks: pd.DataFrame) -> Figure:
    """Tasks waiting (submitted, not yet first assigned) and in service (assigned, not yet finished) over time.

    A task never assigned waits until its finish or delivery (a failure) if it has one, else to the end of
    the record; one never finished stays in service to the end. Tasks without a submission are left out.
    """
    figure, (ax,) = _figure()
    ax.set_title("Queue depth")
    ax.set_xlabel("time since first submission (s)")
    ax.set_ylabel("tasks")
    origin = _origin_ms(tasks)
    if math.isnan(origin):
        _no_data(ax)
        return figure
    frame = pd.DataFrame(
        {
            "task_id": tasks["task_id"],
            "submitted": _ms(tasks, "submitted"),
            "assigned": _ms(tasks, "assigned"),
            "finished": _ms(tasks, "finished"),
            "delivered": _ms(tasks, "delivered"),
        }
    ).dropna(subset=["submitted"])
    per_task = frame.groupby("task_id", sort=False).agg(
        submitted=("submitted", "min"),
        first_assigned=("assigned", "min"),
        last_assigned=("assigned", "max"),
        finished=("finished", "max"),
        delivered=("delivered", "max"),
    )
    left = per_task["finished"].fillna(per_task["delivered"])
    end = float(pd.concat([per_task["submitted"], per_task["first_assigned"], left]).max())
    waiting_until = per_task["first_assigned"].fillna(left)
    in_service = per_task[per_task["last_assigned"].notna()]
    for label, starts, stops in (
        ("waiting", per_task["submitted"], waiting_until),
        ("in service", in_service["last_assigned"], left[in_service.index]),
    ):
        times, counts = _step_counts(starts, stops, end)
        ax.step(
            np.concatenate([[0.0], (times - origin) / 1000]), np.concatenate([[0.0], counts]), where="post", label=label
        )
    ax.set_ylim(bottom=0)
    _legend(ax)
    return figure


def scaling(runs: Sequence[Run]) -> Figure:
    """Measured answered tasks per minute against workers, with the ideal capacity workers / mean service
    time (pooled over the runs), the offered rate where known, and the KPI "N tasks/min for N workers"."""
    figure, (ax,) = _figure()
    ax.set_title("Throughput against workers")
    ax.set_xlabel("workers")
    ax.set_ylabel("answered tasks per minute")
    # Over the run's window, not the sending time: under overload the backlog drains after the last send,
    # and answers per sending time would report the offered rate instead of the capacity.
    measured = [(run.workers, kpi.throughput_per_min(run.tasks), run.params.get("rate_per_s")) for run in runs]
    measured = [(w, t, r) for w, t, r in measured if not math.isnan(t)]
    if not measured:
        _no_data(ax)
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
    ax.plot(line, line, ":", color=_TARGET_COLOUR, label="KPI: N tasks/min for N workers")
    ax.set_xlim(0, most + 1)
    ax.set_ylim(bottom=0)
    _legend(ax)
    return figure


def fault_timeline(
    tasks: pd.DataFrame, worker_events: pd.DataFrame, faults: Sequence[Mapping[str, Any]] = ()
) -> Figure:
    """One line per task from submission to delivery (or finish), coloured first attempt or retried, failed
    tasks marked, unfinished ones grey to the end; a labelled vertical line per fault and a marker per worker
    going offline. ``faults`` are ``{"timestamp": ms, "action": ..., "target": ...}``."""
    figure, (ax,) = _figure(height=6)
    ax.set_title("Tasks and faults")
    ax.set_xlabel("time since first submission (s)")
    ax.set_ylabel("task (by submission)")
    origin = _origin_ms(tasks)
    if math.isnan(origin):
        _no_data(ax)
        return figure
    order = _ms(tasks, "submitted").sort_values(kind="stable").dropna().index
    submitted = (_ms(tasks, "submitted")[order].to_numpy() - origin) / 1000
    left = (_ms(tasks, "delivered").fillna(_ms(tasks, "finished"))[order].to_numpy() - origin) / 1000
    attempt = pd.to_numeric(tasks["attempt"], errors="coerce").fillna(1)[order].to_numpy()
    failed = (tasks["outcome"] == "failed")[order].to_numpy(dtype=bool)
    events = _worker_events(worker_events)
    ends = [*left[~np.isnan(left)], *((events["_t"] - origin) / 1000)]
    ends += [(float(f["timestamp"]) - origin) / 1000 for f in faults]
    end_s = max([*submitted, *ends])
    rows = np.arange(len(order))
    done = ~np.isnan(left)
    for label, chosen, colour in (
        ("first attempt", done & (attempt <= 1), "tab:blue"),
        ("retried", done & (attempt > 1), "tab:orange"),
        ("never finished", ~done, "grey"),
    ):
        if chosen.any():
            stops = np.where(done, left, end_s)[chosen]
            ax.hlines(rows[chosen], submitted[chosen], stops, colors=colour, label=label)
    if (failed & done).any():
        ax.plot(left[failed & done], rows[failed & done], "x", color=_TARGET_COLOUR, label="failed")
    offline = events[events["state"] == "offline"]
    if len(offline):
        ax.plot(
            (offline["_t"] - origin) / 1000,
            [0.0] * len(offline),
            "v",
            color="black",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="worker offline",
        )
    for fault in faults:
        at = (float(fault["timestamp"]) - origin) / 1000
        ax.axvline(at, color=_TARGET_COLOUR, linestyle="--", linewidth=1)
        text = " ".join(str(fault[k]) for k in ("action", "target") if fault.get(k))
        ax.text(at, 1.0, f" {text}", transform=ax.get_xaxis_transform(), rotation=90, va="top", fontsize="small")
    ax.set_ylim(len(order), -1)
    _legend(ax)
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
    """Measured mean wait of each run against its utilization, with the M/M/c and M/G/c (measured cv²)
    mean-wait curves for each worker count among the runs and the 70-80% utilization band."""
    figure, (ax,) = _figure()
    ax.set_title("Mean wait: measured against queueing predictions")
    ax.set_xlabel("utilization (offered load / capacity)")
    ax.set_ylabel("mean wait: first assigned - submitted (s)")
    ax.axvspan(_BUSY_LOW, _BUSY_HIGH, color=_BAND_COLOUR, alpha=0.15, label="target utilization")
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
            [u for u, _ in points], [w for _, w in points], "o", markersize=8, label=f"{workers} measured"
        )
        capacity = queueing.capacity_per_s(workers, mean)
        mmc = [queueing.mmc(rho * capacity, mean, workers).mean_wait_s for rho in rho_grid]
        mgc = [queueing.mgc(rho * capacity, mean, cv2, workers).mean_wait_s for rho in rho_grid]
        ax.plot(rho_grid, mmc, "--", color=dots.get_color(), label=f"{workers} M/M/c")
        ax.plot(rho_grid, mgc, "-", color=dots.get_color(), label=f"{workers} M/G/c, cv² {cv2:.2f}")
        # The curves run off to infinity near rho = 1; scale to the measurements and the target band instead.
        tops += [w for _, w in points] + [queueing.mmc(0.9 * capacity, mean, workers).mean_wait_s]
    if not tops:
        _no_data(ax)
    else:
        ax.set_ylim(0, max(tops) * 1.2 or 1.0)
    ax.set_xlim(0, 1)
    _legend(ax)
    return figure


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
