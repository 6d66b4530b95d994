"""Queueing-theory predictions for c workers: Erlang C (M/M/c) and the Allen-Cunneen M/G/c approximation.

Times are in seconds, rates per second. The offered load a = λ·E[S] is in Erlangs (the mean number of busy
workers); the utilization rho = a / c is the fraction of the c workers that are busy on average.

Every function refuses an unstable system (rho >= 1) with ``ValueError`` instead of returning 1.0 or infinity:
there the queue grows without bound, no steady-state wait exists, and a finite-looking number would be
drawn on a chart as if it were a prediction. Check ``utilization(...) < 1`` first to sweep loads past saturation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MMC_MODEL = "M/M/c (Erlang C)"
MGC_MODEL = "M/G/c (Allen-Cunneen)"


def _check_servers(servers: int) -> None:
    if servers < 1:
        raise ValueError(f"servers must be at least 1, got {servers}")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {value}")


def capacity_per_s(servers: int, mean_service_s: float) -> float:
    """The most tasks per second c workers can complete: c / E[S]."""
    _check_servers(servers)
    _check_positive("mean_service_s", mean_service_s)
    return servers / mean_service_s


def utilization(arrival_rate_per_s: float, mean_service_s: float, servers: int) -> float:
    """The fraction of workers busy on average, rho = λ·E[S] / c (may be >= 1: an unstable load)."""
    _check_non_negative("arrival_rate_per_s", arrival_rate_per_s)
    return arrival_rate_per_s / capacity_per_s(servers, mean_service_s)


def erlang_c(servers: int, offered_load: float) -> float:
    """The probability that an arriving task waits in M/M/c with c servers and offered load a = λ/μ Erlangs.

    Raises ValueError when a >= c (utilization >= 1): the queue is unstable.
    """
    _check_servers(servers)
    _check_non_negative("offered_load", offered_load)
    if offered_load >= servers:
        raise ValueError(
            f"unstable: offered load {offered_load:g} Erlangs >= {servers} servers "
            f"(utilization {offered_load / servers:.1%} >= 100%); the queue grows without bound"
        )
    # The Erlang B recursion B(k) = a·B(k-1) / (k + a·B(k-1)) stays in [0, 1], unlike the textbook
    # formula's a^c / c! terms, which overflow a float near c = 170.
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    rho = offered_load / servers
    return blocking / (1 - rho * (1 - blocking))


@dataclass(frozen=True)
class Prediction:
    """A steady-state prediction for c workers fed by Poisson arrivals."""

    servers: int
    arrival_rate_per_s: float
    mean_service_s: float
    service_cv2: float
    """Squared coefficient of variation of the service time, Var[S] / E[S]^2 (1 for exponential, 0 for fixed)."""
    utilization: float
    p_wait: float
    mean_wait_s: float
    mean_response_s: float
    """Mean time in the system: mean wait plus mean service."""
    model: str

    @property
    def mean_queue_length(self) -> float:
        """The mean number of tasks waiting for a worker, by Little's law: λ·Wq."""
        return self.arrival_rate_per_s * self.mean_wait_s


def mmc(arrival_rate_per_s: float, mean_service_s: float, servers: int) -> Prediction:
    """M/M/c: Poisson arrivals, exponential service, c workers (Erlang C). Wq = C / (cμ - λ).

    Raises ValueError when utilization >= 1.
    """
    rho = utilization(arrival_rate_per_s, mean_service_s, servers)
    p_wait = erlang_c(servers, rho * servers)
    # cμ - λ is the rate at which a queue drains; dividing by it converts P(wait) into the mean wait.
    drain_rate = capacity_per_s(servers, mean_service_s) - arrival_rate_per_s
    mean_wait = p_wait / drain_rate
    return Prediction(
        servers=servers,
        arrival_rate_per_s=arrival_rate_per_s,
        mean_service_s=mean_service_s,
        service_cv2=1.0,
        utilization=rho,
        p_wait=p_wait,
        mean_wait_s=mean_wait,
        mean_response_s=mean_wait + mean_service_s,
        model=MMC_MODEL,
    )


def mgc(arrival_rate_per_s: float, mean_service_s: float, service_cv2: float, servers: int) -> Prediction:
    """M/G/c by the Allen-Cunneen (Lee-Longton) approximation: Wq ≈ Wq(M/M/c) · (1 + cv²) / 2.

    cv² = 1 (exponential service) gives M/M/c exactly; cv² = 0 (fixed service, M/D/c) halves the M/M/c wait.
    The approximation is good at moderate to high utilization and exact for c = 1 (Pollaczek-Khinchine);
    P(wait) is left at the Erlang C value, which the approximation does not correct.
    Raises ValueError when utilization >= 1.
    """
    _check_non_negative("service_cv2", service_cv2)
    base = mmc(arrival_rate_per_s, mean_service_s, servers)
    mean_wait = base.mean_wait_s * (1 + service_cv2) / 2
    return Prediction(
        servers=servers,
        arrival_rate_per_s=arrival_rate_per_s,
        mean_service_s=mean_service_s,
        service_cv2=service_cv2,
        utilization=base.utilization,
        p_wait=base.p_wait,
        mean_wait_s=mean_wait,
        mean_response_s=mean_wait + mean_service_s,
        model=MGC_MODEL,
    )


def service_stats(service_times_s: Sequence[float]) -> tuple[float, float]:
    """The mean and squared coefficient of variation (sample variance / mean²) of measured service times.

    Needs at least two times (one says nothing about variability) with a positive mean.
    """
    if len(service_times_s) < 2:
        raise ValueError(f"need at least 2 service times to estimate variability, got {len(service_times_s)}")
    for value in service_times_s:
        _check_non_negative("a service time", value)
    mean = statistics.fmean(service_times_s)
    _check_positive("the mean service time", mean)
    # The sample (n-1) variance estimates the service distribution's variance, not just this sample's spread.
    return mean, statistics.variance(service_times_s, mean) / mean**2


def prob_wait_exceeds_mmc(t_s: float, arrival_rate_per_s: float, mean_service_s: float, servers: int) -> float:
    """P(W > t) in M/M/c: C·exp(-(cμ - λ)·t) for t >= 0. Raises ValueError when utilization >= 1."""
    _check_non_negative("t_s", t_s)
    prediction = mmc(arrival_rate_per_s, mean_service_s, servers)
    drain_rate = capacity_per_s(servers, mean_service_s) - arrival_rate_per_s
    return prediction.p_wait * math.exp(-drain_rate * t_s)


def wait_percentile_mmc(p: float, arrival_rate_per_s: float, mean_service_s: float, servers: int) -> float:
    """The p-th quantile of the wait in M/M/c, p a fraction in [0, 1) (0.9 for p90).

    0 when p <= 1 - C (that share of tasks never waits), else ln(C / (1 - p)) / (cμ - λ).
    Raises ValueError when utilization >= 1.
    """
    if not 0 <= p < 1:
        raise ValueError(f"p must be a fraction in [0, 1), got {p}")
    prediction = mmc(arrival_rate_per_s, mean_service_s, servers)
    if p <= 1 - prediction.p_wait:
        return 0.0
    drain_rate = capacity_per_s(servers, mean_service_s) - arrival_rate_per_s
    return math.log(prediction.p_wait / (1 - p)) / drain_rate


def _highest_utilization(acceptable: Callable[[float], bool]) -> float:
    """The highest rho in [0, 1) for which acceptable(rho) holds, given it holds below some rho and fails above."""
    # Waits rise monotonically with load, so bisection finds the crossing; 60 halvings narrow [0, 1)
    # below float resolution.
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if acceptable(middle):
            low = middle
        else:
            high = middle
    return low


def max_utilization_for_mean_response(
    servers: int, mean_service_s: float, target_s: float, service_cv2: float = 1.0
) -> float:
    """The highest utilization at which the predicted (M/G/c) mean response stays within target_s.

    0.0 when the service alone takes target_s or longer.
    """
    _check_positive("target_s", target_s)
    capacity = capacity_per_s(servers, mean_service_s)
    _check_non_negative("service_cv2", service_cv2)
    if mean_service_s >= target_s:
        return 0.0
    return _highest_utilization(
        lambda rho: mgc(rho * capacity, mean_service_s, service_cv2, servers).mean_response_s <= target_s
    )


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
    _check_servers(workers)
    _check_positive("mean_service_s", mean_service_s)
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
    max_p90 = _highest_utilization(
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
