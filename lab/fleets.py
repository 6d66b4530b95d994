"""Fixed against autoscaled fleets under the same load: the step and ramp schedules, one run per fleet, and the
table that compares them (notebook 07).

A fleet is a number of workers (fixed) or `(min, max)` (autoscaled: the cluster starts the autoscaler, which
starts and stops the workers; lab.system.autoscaling). Each run is a `lab_cluster` of its own offered the same
schedule, so the runs differ only by the fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lab.analysis import fleet as fleet_analysis
from lab.experiment import run_open
from lab.loadgen.arrivals import ramp, steps
from lab.runs import Run
from lab.system.autoscaling import Autoscale
from lab.system.presets import lab_cluster
from services.autoscaler.settings import AutoscalerSettings

__all__ = ["fleet_name", "fleet_table", "ramp_load", "run_fleet", "step_load"]

Fleet = int | Autoscale


def fleet_name(fleet: Fleet) -> str:
    """`"fixed 8"` or `"auto 1..8"`."""
    return f"fixed {fleet}" if isinstance(fleet, int) else f"auto {fleet[0]}..{fleet[1]}"


def step_load(low: float, high: float, phases_s: Sequence[float], seed: int = 1) -> tuple[list[float], float]:
    """Poisson sends at `low`, `high`, `low`, ... questions/s, one rate per phase of `phases_s` seconds; the
    schedule and the second at which the first step up comes."""
    if len(phases_s) < 2:
        raise ValueError("a step load needs at least two phases (low, then high)")
    starts = [sum(phases_s[:i]) for i in range(len(phases_s))]
    levels = [(start, low if i % 2 == 0 else high) for i, start in enumerate(starts)]
    return steps(levels, sum(phases_s), seed=seed), float(starts[1])


def ramp_load(start: float, end: float, duration_s: float, seed: int = 1) -> list[float]:
    """Poisson sends whose rate grows linearly from `start` to `end` questions/s over `duration_s`."""
    return ramp(start, end, duration_s, seed=seed)


def run_fleet(  # noqa: PLR0913 (the notebook's knobs, one keyword each)
    schedule: Sequence[float],
    fleet: Fleet,
    *,
    label: str,
    work_seconds: float,
    model_latency_ms: float,
    duration_s: float,
    users: int = 50,
    autoscaler: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """One run of `schedule` against a new local system with `fleet`; `autoscaler` are AutoscalerSettings
    fields (cooldown_s, scale_down_window_s, ...) for an autoscaled fleet. The run's params name the fleet
    (``fleet``) and, for the KPIs, its mean number of workers (``workers``)."""
    autoscaled = not isinstance(fleet, int)
    env = AutoscalerSettings.env_of(**dict(autoscaler or {})) if autoscaled else {}
    options: dict[str, Any] = {"extra_env": env}
    if autoscaled:
        options["autoscale"] = fleet
    workers = fleet if isinstance(fleet, int) else fleet[0]
    with lab_cluster(workers, work_seconds, model_latency_ms, model_latency_ms / 2, **options) as cluster:
        run = run_open(
            cluster,
            schedule,
            label=label,
            users=users,
            duration_s=duration_s,
            arrival="poisson",
            params={"fleet": fleet_name(fleet), "autoscaler": dict(autoscaler or {}), **(params or {})},
            progress=progress,
        )
    lines = fleet_analysis.timeline(run.tasks, run.worker_events)
    if autoscaled and len(lines):
        run.params["workers"] = max(1, round(float(lines["workers"].mean())))
    return run


def fleet_table(
    runs: Sequence[Run], *, band: tuple[float, float] = (0.70, 0.80), latency_target_s: float = 15.0
) -> pd.DataFrame:
    """One row per run: its fleet, answered, latency p95 (and whether it met the target), worker-seconds,
    mean and peak workers, utilization, the share of time in the band, the seconds from the load step
    (params ``step_at_s``) until an added worker took a task, and the KPIs that held and failed."""
    rows = []
    for run in runs:
        figures = fleet_analysis.summary(run.tasks, run.worker_events, band=band, latency_target_s=latency_target_s)
        step = run.params.get("step_at_s")
        delay = fleet_analysis.scale_up_delay_s(run.tasks, run.worker_events, float(step)) if step is not None else None
        kpis = run.kpis()
        rows.append(
            {
                "run": run.run_id,
                "fleet": run.params.get("fleet", ""),
                **figures,
                "scale_up_delay_s": delay,
                "kpis_held": ", ".join(kpis.loc[kpis["passed"] == True, "kpi"]),  # noqa: E712 (None is unjudged)
                "kpis_failed": ", ".join(kpis.loc[kpis["passed"] == False, "kpi"]),  # noqa: E712
            }
        )
    table: pd.DataFrame = pd.DataFrame(rows)
    return table
