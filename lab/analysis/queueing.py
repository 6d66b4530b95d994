"""Queueing-theory predictions for c workers (Erlang C, M/G/c) and the notes on where the original KPIs clash.

The model itself lives in ``services.autoscaler.queueing``, where the autoscaler decides with it; it is
re-exported here so that the lab's modules, notebooks and tests keep importing it from ``lab.analysis.queueing``.
Only the lab's reading of the original system's KPIs (``kpi_contradictions``) is defined here.
"""

from __future__ import annotations

from services.autoscaler.queueing import (
    MGC_MODEL,
    MMC_MODEL,
    Prediction,
    capacity_per_s,
    erlang_c,
    highest_utilization,
    max_utilization_for_mean_response,
    mgc,
    mmc,
    prob_wait_exceeds_mmc,
    service_stats,
    utilization,
    wait_percentile_mmc,
)

__all__ = [
    "MGC_MODEL",
    "MMC_MODEL",
    "Prediction",
    "capacity_per_s",
    "erlang_c",
    "highest_utilization",
    "kpi_contradictions",
    "max_utilization_for_mean_response",
    "mgc",
    "mmc",
    "prob_wait_exceeds_mmc",
    "service_stats",
    "utilization",
    "wait_percentile_mmc",
]


def _span(low: float, high: float) -> str:
    return f"{low * 100:.0f}-{high:.0%}"


def kpi_contradictions(
    workers: int,
    mean_service_s: float,
    *,
    busy_target: tuple[float, float] = (0.70, 0.80),
    latency_target_s: float = 15.0,
    load: float = 0.75,
) -> list[str]:
    """Plain-language notes, numbers filled in, on where the original system's KPIs contradict each other.

    The KPIs are "N tasks/min with N workers", "70-80% of workers busy at normal load" and
    "latency under 15 s per task"; ``load`` is the utilization taken as normal load for the latency notes.
    """
    capacity_per_s(workers, mean_service_s)  # raises ValueError for fewer than 1 worker or a bad service time
    if not 0 < load < 1:
        raise ValueError(f"load must be a utilization in (0, 1), got {load}")
    low_busy, high_busy = busy_target
    busy = _span(low_busy, high_busy)
    notes: list[str] = []

    # "N tasks/min with N workers" fixes λ = N/60 per second, so rho = (N/60)·E[S]/N = E[S]/60 whatever N is.
    kpi_rho = mean_service_s / 60
    relation = "within" if low_busy <= kpi_rho <= high_busy else "outside"
    per_worker_low = low_busy * 60 / mean_service_s
    per_worker_high = high_busy * 60 / mean_service_s
    notes.append(
        f'"{workers} tasks/min with {workers} workers" at {mean_service_s:.3g} s per task is one task per worker '
        f"per minute, so each worker is busy {mean_service_s:.3g} s of every 60: utilization {kpi_rho:.0%}, "
        f'{relation} the "{busy} of workers busy" target. Keeping {busy} busy takes '
        f"{per_worker_low:.1f}-{per_worker_high:.1f} tasks/min per worker "
        f"({per_worker_low * workers:.0f}-{per_worker_high * workers:.0f} tasks/min for {workers} workers); "
        f"{workers} tasks/min would keep them {busy} busy only if a task took "
        f"{low_busy * 60:.0f}-{high_busy * 60:.0f} s."
    )

    budget = latency_target_s - mean_service_s
    if budget <= 0:
        notes.append(
            f'The service alone ({mean_service_s:.3g} s) already exceeds "latency under {latency_target_s:g} s", '
            "at any load."
        )
        return notes

    capacity = capacity_per_s(workers, mean_service_s)
    arrival = load * capacity
    exponential = mmc(arrival, mean_service_s, workers)
    fixed = mgc(arrival, mean_service_s, 0.0, workers)
    p90_wait = wait_percentile_mmc(0.9, arrival, mean_service_s, workers)
    late_share = prob_wait_exceeds_mmc(budget, arrival, mean_service_s, workers)
    verdict = "breaks" if exponential.mean_response_s > latency_target_s else "meets"
    notes.append(
        f"At {load:.0%} utilization ({arrival * 60:.1f} tasks/min) with {workers} workers and {mean_service_s:.3g} s "
        f"per task, {exponential.p_wait:.0%} of tasks wait for a worker (Erlang C). The service alone leaves "
        f'{budget:.3g} s of the "latency under {latency_target_s:g} s" budget for waiting; the predicted mean wait '
        f"is {exponential.mean_wait_s:.1f} s with exponential service (mean response "
        f"{exponential.mean_response_s:.1f} s, which {verdict} the KPI on average) and {fixed.mean_wait_s:.1f} s "
        f"with fixed service (M/D/c, mean response {fixed.mean_response_s:.1f} s). With exponential service the "
        f"90th-percentile wait is {p90_wait:.1f} s and {late_share:.0%} of tasks wait longer than {budget:.3g} s; "
        f"served in {mean_service_s:.3g} s, those tasks take over {latency_target_s:g} s whatever the mean."
    )

    max_exp = max_utilization_for_mean_response(workers, mean_service_s, latency_target_s, 1.0)
    max_fixed = max_utilization_for_mean_response(workers, mean_service_s, latency_target_s, 0.0)
    # With Poisson arrivals P(W > budget) > 0 at any load, so "every task under 15 s" is unattainable;
    # the strictest testable reading is a percentile, here 90% of tasks waiting no more than the budget.
    max_p90 = highest_utilization(
        lambda rho: prob_wait_exceeds_mmc(budget, rho * capacity, mean_service_s, workers) <= 0.10
    )
    notes.append(
        f"With {workers} workers the mean response stays within {latency_target_s:g} s only up to "
        f"{max_exp:.0%} utilization with exponential service ({max_fixed:.0%} with fixed service), and 90% of "
        f"tasks wait no more than {budget:.3g} s only up to {max_p90:.0%} (M/M/c). Read as a bound on every task, "
        f'"under {latency_target_s:g} s" cannot hold at any load with random arrivals; only a percentile of it '
        "can be tested."
    )
    return notes
