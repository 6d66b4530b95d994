"""Queueing-theory predictions for c workers: Erlang C (M/M/c) and the Allen-Cunneen M/G/c approximation.

Times are in seconds, rates per second. The offered load a = λ·E[S] is in Erlangs (the mean number of busy
workers); the utilization rho = a / c is the fraction of the c workers that are busy on average.

Every function refuses an unstable system (rho >= 1) with ``ValueError`` instead of returning 1.0 or infinity:
there the queue grows without bound, no steady-state wait exists, and a finite-looking number would be
drawn on a chart as if it were a prediction. Check ``utilization(...) < 1`` first to sweep loads past saturation.

Pure arithmetic, no I/O: the autoscaler's policy decides with it and the lab (``lab.analysis.queueing``) predicts
and charts with it, so that both use the same model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "MGC_MODEL",
    "MMC_MODEL",
    "Prediction",
    "capacity_per_s",
    "erlang_c",
    "highest_utilization",
    "max_utilization_for_mean_response",
    "mgc",
    "mmc",
    "prob_wait_exceeds_mmc",
    "service_stats",
    "utilization",
    "wait_percentile_mmc",
]

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


def highest_utilization(acceptable: Callable[[float], bool]) -> float:
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
    return highest_utilization(
        lambda rho: mgc(rho * capacity, mean_service_s, service_cv2, servers).mean_response_s <= target_s
    )
