"""The original system's KPIs judged against a run's DataFrames (columns in ``lab.runs.schema``): one row per
KPI with the measured value, the target, the verdict (pass, FAIL or n/a with why), and how it was measured.

Times in the frames are ms since the epoch; the KPI table reports every latency in ms and every fraction in
percent (its ``unit`` column). Empty or partial data never raises: a KPI with nothing to measure (registration
included) gets ``measured`` NaN and verdict n/a; so does one that does not apply to the run
(``lab.analysis.verdicts``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from lab.analysis import verdicts
from lab.analysis.display import ms_text
from lab.analysis.series import per_second as per_second  # re-exported: callers know it as kpi.per_second
from lab.analysis.stats import percentile

KPI_COLUMNS = ["kpi", "measured", "unit", "target", "passed", "verdict", "note", "how", "detail"]
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "max": 100.0}

KPI_NAMES = [
    "availability",
    "throughput",
    "latency",
    "utilization",
    "mqtt_latency",
    "grpc_latency",
    "overhead",
    "registration",
]

LATENCY_TARGET_S = 15.0
MQTT_TARGET_MS = 100.0
GRPC_TARGET_S = 1.0
OVERHEAD_TARGET_S = 1.0
AVAILABILITY_TARGET = 0.99
BUSY_TARGET = (0.70, 0.80)
REGISTRATION_TARGET_S = (3.0, 5.0)

_BUSY = "busy"
_OFFLINE = "offline"


def percentiles(series_s: Iterable[float]) -> dict[str, float]:
    """p50, p90, p95, p99 and max of the values (NaNs dropped), by linear interpolation; NaN when empty."""
    values = [float(v) for v in series_s if not _missing(v)]
    return {name: percentile(values, q) for name, q in PERCENTILES.items()}


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _ms(tasks: pd.DataFrame, column: str) -> pd.Series:
    # Collector frames hold None for unknown stamps (object dtype); float makes them NaN for arithmetic.
    return pd.to_numeric(tasks[column], errors="coerce").astype("float64")


def _answered(tasks: pd.DataFrame) -> pd.DataFrame:
    answered: pd.DataFrame = tasks[tasks["outcome"] == "answered"]
    return answered


def _describe(p: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {ms_text(value)}" for name, value in p.items())


def _row(
    kpi: str,
    measured: float,
    unit: str,
    target: str,
    judged: tuple[bool | None, str],
    how: str,
    detail: str = "",
) -> dict[str, Any]:
    passed, note = judged
    if passed is None and not note:
        note = "nothing measured"
    verdict = "n/a" if passed is None else ("pass" if passed else "FAIL")
    return {
        "kpi": kpi,
        "measured": measured,
        "unit": unit,
        "target": target,
        "passed": passed,
        "verdict": verdict,
        "note": note,
        "how": how,
        "detail": detail,
    }


def _judge(value: float, ok: bool) -> bool | None:
    # A NaN measurement is not a failure of the system, it is no measurement: leave it unjudged.
    return None if math.isnan(value) else bool(ok)


def run_window_s(tasks: pd.DataFrame) -> float:
    """Seconds from the first submission to the last delivery (or finish) in the run; NaN without both."""
    start = _ms(tasks, "submitted").min()
    end = pd.concat([_ms(tasks, "delivered"), _ms(tasks, "finished")]).max()
    if _missing(start) or _missing(end) or end <= start:
        return float("nan")
    return float(end - start) / 1000


def throughput_per_min(tasks: pd.DataFrame, duration_s: float | None = None) -> float:
    """Answered tasks per minute over ``duration_s`` (default: the run window); NaN for no window."""
    window = run_window_s(tasks) if duration_s is None else float(duration_s)
    if _missing(window) or window <= 0:
        return float("nan")
    return len(_answered(tasks)) / (window / 60)


def latency_s(tasks: pd.DataFrame) -> pd.Series:
    """End-to-end latency of answered tasks: delivered minus submitted, in seconds."""
    answered = _answered(tasks)
    return ((_ms(answered, "delivered") - _ms(answered, "submitted")) / 1000).dropna()


def _event_source(worker_events: pd.DataFrame) -> pd.DataFrame:
    # The master's view (gRPC) is what assignment acts on; the workers' own reports are the fallback.
    grpc = worker_events[worker_events["source"] == "grpc"]
    chosen: pd.DataFrame = grpc if len(grpc) else worker_events[worker_events["source"] == "mqtt"]
    return chosen


def utilization_by_worker(worker_events: pd.DataFrame, end_ms: float | None = None) -> pd.DataFrame:
    """Per worker: seconds online, seconds busy, and their ratio, from its state changes.

    Uses the gRPC (master's) events if there are any, else the MQTT ones. Each state lasts until the
    worker's next event, the last one until ``end_ms`` (default: the last event of any worker).
    Any state but ``offline`` counts as online; only ``busy`` counts as busy.
    """
    events = _event_source(worker_events)
    columns = ["worker_id", "online_s", "busy_s", "utilization"]
    if events.empty:
        empty: pd.DataFrame = pd.DataFrame(columns=columns)
        return empty
    stamps = pd.to_numeric(events["timestamp"], errors="coerce").astype("float64")
    end = float(stamps.max()) if end_ms is None else float(end_ms)
    rows = []
    ordered = events.assign(_t=stamps).sort_values("_t", kind="stable")
    for worker_id, group in ordered.groupby("worker_id", sort=True):
        times = [*group["_t"].tolist(), max(end, float(group["_t"].max()))]
        online = busy = 0.0
        for state, start, stop in zip(group["state"].tolist(), times, times[1:], strict=False):
            length = (stop - start) / 1000
            if state != _OFFLINE:
                online += length
            if state == _BUSY:
                busy += length
        rows.append(
            {
                "worker_id": worker_id,
                "online_s": online,
                "busy_s": busy,
                "utilization": busy / online if online > 0 else float("nan"),
            }
        )
    table: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return table


def utilization(worker_events: pd.DataFrame) -> float:
    """Fraction of worker-online time spent busy, over all workers; NaN when no worker was ever online."""
    per_worker = utilization_by_worker(worker_events)
    online = float(per_worker["online_s"].sum())
    return float(per_worker["busy_s"].sum()) / online if online > 0 else float("nan")


def registration_s(worker_events: pd.DataFrame) -> pd.Series:
    """Per worker: seconds from its first ``online`` on MQTT (its register, as the lab's tap saw it) to the
    master's first gRPC ``online``, ``idle`` or ``busy`` for it (when it became assignable: the master marks a
    registered worker idle at once, saying only ``online`` when nothing waits, and a worker that joins while
    questions wait is assigned one at once). The worker's own MQTT busy does not count. Workers without both are
    left out, so is a worker whose first ``online`` is the master's own (nothing to measure it from)."""
    stamps = pd.to_numeric(worker_events["timestamp"], errors="coerce").astype("float64")
    events = worker_events.assign(at=stamps).sort_values("at", kind="stable")
    online = events[events["state"] == "online"].drop_duplicates("worker_id")  # each worker's first
    assignable = events[events["state"].isin(("online", "idle", "busy")) & (events["source"] == "grpc")]
    result: dict[str, float] = {}
    for row in online.itertuples():  # ("at": itertuples renames columns with a leading underscore)
        if row.source == "grpc":
            continue
        later = assignable[(assignable["worker_id"] == row.worker_id) & (assignable["at"] >= row.at)]["at"]
        if len(later):
            result[str(row.worker_id)] = (float(later.min()) - float(row.at)) / 1000
    return pd.Series(result, dtype="float64", name="registration_s")


def evaluate(
    tasks: pd.DataFrame,
    worker_events: pd.DataFrame,
    workers: int,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per KPI of the original system (``KPI_NAMES``, in that order) with columns ``KPI_COLUMNS``:
    kpi, measured (in ``unit``: ms for latencies, % for fractions), unit, target, passed (True/False, None
    when not judged), verdict (``pass``, ``FAIL``, ``n/a``), note (why n/a, or the small-run flag), how (what
    was measured), detail (the percentiles, where there are some).

    ``params`` may give ``duration_s`` (the load's duration; throughput divides by it instead of the
    window from first submission to last delivery) and the offered load (``target_utilization``,
    ``rate_per_s``), which decide whether utilization and throughput apply (``lab.analysis.verdicts``).

    The table's ``attrs["by_language"]`` holds utilization, latency and processing time by worker language
    (``lab.analysis.languages.breakdown_records``), which ``lab.runs.kpi_markdown`` prints.
    """
    from lab.analysis.languages import breakdown_records  # it builds on this module's functions

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    params = params or {}
    rows = [
        _availability(tasks),
        _throughput(tasks, workers, params),
        _latency(tasks),
        _utilization(worker_events, verdicts.offered_utilization(tasks, workers, params)),
        _mqtt_latency(tasks),
        _grpc_latency(tasks),
        _overhead(tasks),
        _registration(worker_events),
    ]
    table: pd.DataFrame = pd.DataFrame(rows, columns=KPI_COLUMNS)
    table.attrs["by_language"] = breakdown_records(tasks, worker_events)
    return table


def _availability(tasks: pd.DataFrame) -> dict[str, Any]:
    accepted = len(tasks)
    answered = len(_answered(tasks))
    value = answered / accepted if accepted else float("nan")
    share = 1 - AVAILABILITY_TARGET
    judged = verdicts.size_rule(
        _judge(value, value >= AVAILABILITY_TARGET),
        accepted,
        accepted - answered,
        share,
        percentile=False,
        noun="questions",
        miss="failure",
    )
    return _row(
        "availability",
        100 * value,
        "%",
        f">= {AVAILABILITY_TARGET:.0%}",
        judged,
        f"Answered tasks ({answered}) over accepted tasks ({accepted}); failed and never-finished tasks count "
        "against it.",
    )


def _throughput(tasks: pd.DataFrame, workers: int, params: Mapping[str, Any]) -> dict[str, Any]:
    duration_s = params.get("duration_s")
    window = run_window_s(tasks) if duration_s is None else float(duration_s)
    value = throughput_per_min(tasks, window)
    basis = "the load's duration" if duration_s is not None else "the window from first submission to last delivery"
    return _row(
        "throughput",
        value,
        "tasks/min",
        f">= {workers} tasks/min ({workers} workers)",
        verdicts.throughput_rule(_judge(value, value >= workers), workers, params),
        f'Answered tasks per minute over {basis} ({window:.1f} s), against the original "N tasks/min for N workers".',
    )


def _percentile_row(kpi: str, values_ms: pd.Series, limit_ms: float, how: str) -> dict[str, Any]:
    """A "p95 < limit" KPI over samples in ms, after the run-size rule (5% of the samples may reach it)."""
    p = percentiles(values_ms.tolist())
    value = p["p95"]
    judged = verdicts.size_rule(
        _judge(value, value < limit_ms),
        len(values_ms),
        int((values_ms >= limit_ms).sum()),
        1 - PERCENTILES["p95"] / 100,
        percentile=True,
        noun="tasks",
        miss=f"task at {ms_text(limit_ms)} or more",
    )
    return _row(kpi, value, "ms", f"p95 < {ms_text(limit_ms)}", judged, how, _describe(p))


def _latency(tasks: pd.DataFrame) -> dict[str, Any]:
    values = latency_s(tasks) * 1000
    return _percentile_row(
        "latency",
        values,
        LATENCY_TARGET_S * 1000,
        f"Delivered minus submitted for the {len(values)} answered tasks; p95 is judged because "
        '"under 15 s per task" is a promise to nearly every user, which a mean or median would hide, while '
        "the max would let one outlier decide the run (p99 and max are in the detail).",
    )


def _utilization(worker_events: pd.DataFrame, offered: float) -> dict[str, Any]:
    value = utilization(worker_events)
    source = "gRPC (master)" if (worker_events["source"] == "grpc").any() else "MQTT (workers)"
    low, high = BUSY_TARGET
    offered_text = "unknown" if math.isnan(offered) else f"{offered:.0%}"
    return _row(
        "utilization",
        100 * value,
        "%",
        f"{low * 100:.0f}-{high:.0%} at normal load",
        verdicts.load_rule(_judge(value, low <= value <= high), offered, BUSY_TARGET),
        f"Busy time over online time summed across workers, from the {source} busy/idle state changes; the "
        f"target applies at normal load only, taken as an offered load in the same {low:.0%}-{high:.0%} band "
        f"(this run's: {offered_text}).",
        "; ".join(f"{r.worker_id} {r.utilization:.0%}" for r in utilization_by_worker(worker_events).itertuples()),
    )


def _mqtt_latency(tasks: pd.DataFrame) -> dict[str, Any]:
    values = (_ms(tasks, "started") - _ms(tasks, "assigned")).dropna()
    return _percentile_row(
        "mqtt_latency",
        values,
        MQTT_TARGET_MS,
        "Worker start minus master assignment, over MQTT; the master's and the worker's clocks are one clock "
        f"only when both run on this machine ({len(values)} tasks); p95 is judged.",
    )


def _grpc_latency(tasks: pd.DataFrame) -> dict[str, Any]:
    values = (_ms(tasks, "delivered") - _ms(tasks, "finished")).dropna()
    return _percentile_row(
        "grpc_latency",
        values,
        GRPC_TARGET_S * 1000,
        "Delivery of the result to the user minus the worker's finish, across the worker's gRPC result call "
        f"({len(values)} tasks); p95 is judged.",
    )


def _overhead(tasks: pd.DataFrame) -> dict[str, Any]:
    answered = _answered(tasks)
    values = (_ms(answered, "delivered") - _ms(answered, "submitted") - _ms(answered, "processing_time_ms")).dropna()
    return _percentile_row(
        "overhead",
        values,
        OVERHEAD_TARGET_S * 1000,
        "Latency minus the worker's processing_time_ms for answered tasks; it includes time queued, so under "
        f"load it measures waiting as well as the system's own cost ({len(values)} tasks); p95 is judged.",
    )


def _registration(worker_events: pd.DataFrame) -> dict[str, Any]:
    values = registration_s(worker_events) * 1000
    low, high = (1000 * s for s in REGISTRATION_TARGET_S)
    target = f"{low:g}-{high:g} ms (every worker <= {high:g} ms)"
    if values.empty:
        return _row(
            "registration",
            float("nan"),
            "ms",
            target,
            (None, "not measurable (no register followed by a gRPC idle)"),
            "Not measurable: no worker has both an online (register) event and a later gRPC idle event from the "
            "master; a worker's first busy is not its registration.",
        )
    value = float(values.max())
    return _row(
        "registration",
        value,
        "ms",
        target,
        (value <= high, ""),
        f"Slowest of {len(values)} workers from their register on MQTT to the master's first gRPC online, idle or busy "
        f"for it (assignable); faster than {low:g} ms is better than the target, not a failure.",
        _describe(percentiles(values.tolist())),
    )
