"""A fleet that changes size: workers, busy workers and latency over time, the worker-seconds it cost, and how
fast added workers took tasks after a load step.

Times in the frames are ms since the epoch (as the collector records them); the results are in seconds from the
run's first submission. Worker states come from the master's view (gRPC) when the run has it, as the KPIs do:
a worker counts from its first event to its ``offline`` (or ``lost``), and as busy from ``busy`` to its next
state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab.analysis.kpi import _event_source, latency_s

GONE = frozenset({"offline", "lost"})
BUSY = "busy"


@dataclass(frozen=True)
class Interval:
    """One worker in one state from `start_s` to `stop_s` (seconds from the run's start)."""

    worker_id: str
    state: str
    start_s: float
    stop_s: float


def run_start_ms(tasks: pd.DataFrame) -> float:
    """The first submission (ms since the epoch); NaN for a run without tasks."""
    stamps = pd.to_numeric(tasks["submitted"], errors="coerce").dropna()
    return float(stamps.min()) if len(stamps) else math.nan


def run_end_ms(tasks: pd.DataFrame) -> float:
    """The last delivery or finish (ms since the epoch); NaN for a run without them."""
    stamps = pd.concat([pd.to_numeric(tasks[c], errors="coerce") for c in ("delivered", "finished")]).dropna()
    return float(stamps.max()) if len(stamps) else math.nan


def intervals(worker_events: pd.DataFrame, start_ms: float, end_ms: float) -> list[Interval]:
    """Every worker's states as intervals clipped to [start_ms, end_ms], in seconds from start_ms. A state lasts
    until the worker's next event, the last one until end_ms; states before start_ms carry into the window."""
    events = _event_source(worker_events)
    found: list[Interval] = []
    if events.empty:
        return found
    stamps = pd.to_numeric(events["timestamp"], errors="coerce").astype("float64")
    ordered = events.assign(_t=stamps).dropna(subset=["_t"]).sort_values("_t", kind="stable")
    for worker_id, group in ordered.groupby("worker_id", sort=True):
        times = group["_t"].tolist()
        states = group["state"].tolist()
        for state, start, stop in zip(states, times, [*times[1:], max(end_ms, times[-1])], strict=True):
            begin, end = max(start, start_ms), min(stop, end_ms)
            if state not in GONE and end > begin:
                found.append(Interval(str(worker_id), str(state), (begin - start_ms) / 1000, (end - start_ms) / 1000))
    return found


def _spread(spans: list[Interval], edges: np.ndarray) -> np.ndarray:
    """Seconds of `spans` that fall in each bin between `edges`."""
    total = np.zeros(len(edges) - 1)
    for span in spans:
        overlap = np.minimum(edges[1:], span.stop_s) - np.maximum(edges[:-1], span.start_s)
        total += np.clip(overlap, 0, None)
    return total


def timeline(
    tasks: pd.DataFrame, worker_events: pd.DataFrame, bin_s: float = 5.0, end_ms: float | None = None
) -> pd.DataFrame:
    """Per bin of `bin_s` seconds from the first submission: ``t_s`` (the bin's start), ``workers`` and ``busy``
    (mean numbers over the bin), ``utilization`` (busy / workers; NaN with no worker), ``arrivals_per_s`` and
    ``latency_p95_s`` (of the answered tasks submitted in the bin; NaN without any)."""
    columns = ["t_s", "workers", "busy", "utilization", "arrivals_per_s", "latency_p95_s"]
    start = run_start_ms(tasks)
    end = run_end_ms(tasks) if end_ms is None else float(end_ms)
    if math.isnan(start) or math.isnan(end) or end <= start:
        empty: pd.DataFrame = pd.DataFrame(columns=columns)
        return empty
    edges = np.arange(0.0, (end - start) / 1000 + bin_s, bin_s)
    spans = intervals(worker_events, start, end)
    alive = _spread(spans, edges) / bin_s
    busy = _spread([s for s in spans if s.state == BUSY], edges) / bin_s
    submitted = (pd.to_numeric(tasks["submitted"], errors="coerce") - start) / 1000
    which = np.digitize(submitted.fillna(-1).to_numpy(), edges) - 1
    arrivals = np.bincount(which[(which >= 0) & (which < len(edges) - 1)], minlength=len(edges) - 1) / bin_s
    waits = latency_s(tasks)
    p95 = np.full(len(edges) - 1, np.nan)
    answered_bins = pd.Series(which, index=tasks.index).loc[waits.index]
    for index, group in waits.groupby(answered_bins.to_numpy()):
        if 0 <= int(index) < len(p95):
            p95[int(index)] = float(group.quantile(0.95))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(alive > 0, busy / np.where(alive > 0, alive, 1), np.nan)
    frame: pd.DataFrame = pd.DataFrame(
        {
            "t_s": edges[:-1],
            "workers": alive,
            "busy": busy,
            "utilization": share,
            "arrivals_per_s": arrivals,
            "latency_p95_s": p95,
        }
    )
    return frame


def worker_seconds(worker_events: pd.DataFrame, start_ms: float, end_ms: float) -> float:
    """What the fleet cost: the seconds each worker was up between start_ms and end_ms, summed."""
    return float(sum(s.stop_s - s.start_s for s in intervals(worker_events, start_ms, end_ms)))


def scale_up_delay_s(tasks: pd.DataFrame, worker_events: pd.DataFrame, step_at_s: float) -> float:
    """Seconds from a load step (`step_at_s` after the first submission) until the first task started by a
    worker that was not up at the step; NaN when no new worker took a task."""
    start = run_start_ms(tasks)
    if math.isnan(start):
        return math.nan
    step_ms = start + step_at_s * 1000
    events = _event_source(worker_events)
    stamps = pd.to_numeric(events["timestamp"], errors="coerce")
    before = events[stamps <= step_ms].assign(_t=stamps).sort_values("_t", kind="stable")
    last = before.groupby("worker_id")["state"].last()
    # Up at the step: its last state before it was not offline; one that left and came back counts as new.
    up_at_step = set(last[~last.isin(GONE)].index)
    started = pd.to_numeric(tasks["started"], errors="coerce").fillna(pd.to_numeric(tasks["assigned"], errors="coerce"))
    later = tasks[(started >= step_ms) & ~tasks["worker_id"].isin(up_at_step) & (tasks["worker_id"] != "")]
    if later.empty:
        return math.nan
    return float(started.loc[later.index].min() - step_ms) / 1000


def summary(
    tasks: pd.DataFrame,
    worker_events: pd.DataFrame,
    *,
    band: tuple[float, float] = (0.70, 0.80),
    latency_target_s: float = 15.0,
    bin_s: float = 5.0,
) -> dict[str, float]:
    """The figures a fleet is judged by: answered tasks, latency p95 against the target, worker-seconds,
    mean and peak workers, utilization over the run (busy over worker-seconds) and the share of bins (with
    work arriving) whose utilization lay in `band`."""
    start, end = run_start_ms(tasks), run_end_ms(tasks)
    lines = timeline(tasks, worker_events, bin_s)
    cost = worker_seconds(worker_events, start, end) if not math.isnan(start) else math.nan
    busy_s = float((lines["busy"] * bin_s).sum()) if len(lines) else math.nan
    active = lines[lines["arrivals_per_s"] > 0]
    low, high = band
    in_band = active["utilization"].between(low, high) if len(active) else pd.Series(dtype=bool)
    latencies = latency_s(tasks)
    p95 = float(latencies.quantile(0.95)) if len(latencies) else math.nan
    return {
        "answered": float(len(latencies)),
        "latency_p95_s": p95,
        "latency_target_met": float(p95 <= latency_target_s) if not math.isnan(p95) else math.nan,
        "worker_seconds": cost,
        "mean_workers": float(lines["workers"].mean()) if len(lines) else math.nan,
        "peak_workers": float(lines["workers"].max()) if len(lines) else math.nan,
        "utilization": busy_s / cost if cost and not math.isnan(cost) else math.nan,
        "share_of_time_in_band": float(in_band.mean()) if len(in_band) else math.nan,
    }
