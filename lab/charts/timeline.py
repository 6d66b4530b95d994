"""Charts of a run over time: throughput, worker utilization, queue depth, and tasks against faults.

Times on x axes are seconds since the run's first submission; tasks missing a timestamp a chart needs are
left out of it. Each chart names its run on the right of its title when given ``run_id``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lab.analysis import kpi
from lab.analysis.series import per_second
from lab.charts.data import ms, origin_ms
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
    titled,
)

ROLLING_S = 10


def throughput(tasks: pd.DataFrame, workers: int | None = None, *, run_id: str | None = None) -> Figure:
    """Tasks submitted and answered in each second since the first submission, with a rolling mean of
    answered; with ``workers``, the KPI "N tasks/min for N workers" as a rate per second."""
    figure, (ax,) = new_figure()
    titled(ax, "Throughput", run_name(run_id))
    ax.set_xlabel("time since first submission (s)")
    ax.set_ylabel("tasks per second")
    integer_ticks(ax.yaxis)
    series = per_second(tasks)
    if series.empty:
        no_data(ax)
        return figure
    seconds = series.index.to_numpy(dtype="float64")
    ax.plot(seconds, series["submitted"].to_numpy(dtype="float64"), label="submitted", color="tab:blue", alpha=0.5)
    ax.plot(seconds, series["answered"].to_numpy(dtype="float64"), label="answered", color="tab:orange", alpha=0.6)
    rolling = series["answered"].astype("float64").rolling(ROLLING_S, min_periods=1).mean()
    ax.plot(seconds, rolling.to_numpy(), label=f"answered, {ROLLING_S} s mean", color="tab:orange", linewidth=2.5)
    if workers:
        per_s = workers / 60  # the axis is per second
        ax.axhline(per_s, color=TARGET_COLOUR, linestyle="--", label=f"KPI {workers} tasks/min = {per_s:.2g}/s")
    ax.set_ylim(bottom=0)
    legend(ax)
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
    stamps = ms(events, "timestamp")
    ordered: pd.DataFrame = events.assign(_t=stamps).dropna(subset=["_t"]).sort_values("_t", kind="stable")
    return ordered


def utilization_timeline(
    worker_events: pd.DataFrame, tasks: pd.DataFrame | None = None, *, run_id: str | None = None
) -> Figure:
    """One row per worker with its busy spans as bars and its offline spans hatched; below, the percentage of
    online workers busy over time against the 70-80% target band.

    A busy span runs from a ``busy`` event to the worker's next other state; the last state lasts until the
    last event (or task delivery). Time zero is the first submission in ``tasks``, else the first event.
    """
    figure, (gantt, busy) = new_figure(rows=2, height=6, ratios=(3, 1.3))
    titled(gantt, "Worker utilization", run_name(run_id))
    gantt.set_ylabel("worker")
    busy.set_xlabel("time since first submission (s)" if tasks is not None else "time since first event (s)")
    busy.set_ylabel("busy (% of online)")
    percent_ticks(busy.yaxis)
    events = _worker_events(worker_events)
    if events.empty:
        no_data(gantt)
        return figure
    origin = origin_ms(tasks)
    origin = float(events["_t"].min()) if math.isnan(origin) else origin
    end = float(events["_t"].max())
    if tasks is not None and not tasks.empty:
        last_task = pd.concat([ms(tasks, "delivered"), ms(tasks, "finished")]).max()
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
    legend(gantt)
    times, fractions = _busy_fraction(events)
    busy.step((times - origin) / 1000, 100 * fractions, where="post", label="busy / online")
    busy.axhspan(BUSY_LOW, BUSY_HIGH, color=BAND_COLOUR, alpha=0.2, label=f"target {BUSY_LOW:.0f}-{BUSY_HIGH:.0f}%")
    overall = 100 * kpi.utilization(worker_events)
    if not math.isnan(overall):
        busy.axhline(overall, color="tab:purple", linestyle=":", label=f"run {overall:.1f}%")
    busy.set_ylim(-5, 105)
    legend(busy)
    return figure


def _step_counts(starts: pd.Series, stops: pd.Series, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Times and the number of intervals open from each on; a missing stop leaves the interval open to end."""
    changes = pd.concat([pd.Series(1.0, index=starts.to_numpy()), pd.Series(-1.0, index=stops.fillna(end).to_numpy())])
    # Same-instant arrivals and departures net out: no spike that never existed.
    net = changes.groupby(level=0).sum().sort_index()
    return net.index.to_numpy(dtype="float64"), net.cumsum().to_numpy(dtype="float64")


def queue_depth(tasks: pd.DataFrame, *, run_id: str | None = None) -> Figure:
    """Tasks waiting (submitted, not yet first assigned) and in service (assigned, not yet finished) over time.

    A task never assigned waits until its finish or delivery (a failure) if it has one, else to the end of
    the record; one never finished stays in service to the end. Tasks without a submission are left out.
    """
    figure, (ax,) = new_figure()
    titled(ax, "Queue depth", run_name(run_id))
    ax.set_xlabel("time since first submission (s)")
    ax.set_ylabel("tasks")
    integer_ticks(ax.yaxis)
    origin = origin_ms(tasks)
    if math.isnan(origin):
        no_data(ax)
        return figure
    frame = pd.DataFrame(
        {
            "task_id": tasks["task_id"],
            "submitted": ms(tasks, "submitted"),
            "assigned": ms(tasks, "assigned"),
            "finished": ms(tasks, "finished"),
            "delivered": ms(tasks, "delivered"),
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
    legend(ax)
    return figure


def fault_timeline(
    tasks: pd.DataFrame,
    worker_events: pd.DataFrame,
    faults: Sequence[Mapping[str, Any]] = (),
    *,
    run_id: str | None = None,
) -> Figure:
    """One line per task from submission to delivery (or finish), coloured first attempt or retried, failed
    tasks marked, unfinished ones grey to the end; a labelled vertical line per fault and a marker per worker
    going offline. ``faults`` are ``{"timestamp": ms, "action": ..., "target": ...}``."""
    figure, (ax,) = new_figure(height=6)
    titled(ax, "Tasks and faults", run_name(run_id))
    ax.set_xlabel("time since first submission (s)")
    ax.set_ylabel("task (by submission)")
    integer_ticks(ax.yaxis)
    origin = origin_ms(tasks)
    if math.isnan(origin):
        no_data(ax)
        return figure
    order = ms(tasks, "submitted").sort_values(kind="stable").dropna().index
    submitted = (ms(tasks, "submitted")[order].to_numpy() - origin) / 1000
    left = (ms(tasks, "delivered").fillna(ms(tasks, "finished"))[order].to_numpy() - origin) / 1000
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
        ax.plot(left[failed & done], rows[failed & done], "x", color=TARGET_COLOUR, label="failed")
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
        ax.axvline(at, color=TARGET_COLOUR, linestyle="--", linewidth=1)
        text = " ".join(str(fault[k]) for k in ("action", "target") if fault.get(k))
        ax.text(at, 1.0, f" {text}", transform=ax.get_xaxis_transform(), rotation=90, va="top", fontsize="small")
    ax.set_ylim(len(order), -1)
    legend(ax)
    return figure
