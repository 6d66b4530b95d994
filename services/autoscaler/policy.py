"""The autoscaler's decision: how many workers the observed load needs, without flapping.

Pure: no I/O, no clock; every call takes an observation stamped with the caller's time and returns a decision.

How a target is reached, with λ the arrival rate, S the mean service time, T the latency target:
1. Offered load a = λ·S Erlangs: the workers busy on average.
2. Latency need: the fewest c with utilization a/c < 1 and the predicted p-quantile of the wait (p = 0.95, as
   the KPI judges the p95 of latency) plus S <= T: M/M/c's wait quantile scaled by (1 + cv²)/2, as Allen-Cunneen
   scales the mean (`response_quantile`). Sizing for the mean wait instead left the p95 over T at the fleet it
   chose. The service's own spread is not the fleet's to change. When S >= T no c meets it, and with work to do
   the target is the maximum.
3. Backlog: q tasks queued behind b busy workers must start within the wait budget B = T - S. Of c workers, the
   c - b new or idle ones take the first c - b at once; the rest start as workers finish, about one every S/c
   seconds, so the last starts after (q - c + b)·S/c <= B, that is c >= (q + b)·S/T. Later arrivals queue behind
   them (first in, first out) and are the latency need's business. One question at zero workers needs one.
4. Band: within those, utilization in [low, high] when a whole number of workers allows it. The fleet stays
   where it is while its utilization is in the band (hysteresis), else moves the least into it: up to
   ceil(a/high) or down to floor(a/low).
5. Clamped to [min, max], but never below the busy workers: a scale-down must not take a busy one.
Then up at once, down only to the highest target recommended within the scale-down window (stabilization, as
Kubernetes' HPA does), and no change within cooldown_s of the last one, except from zero workers with work
waiting, where nothing can flap and nothing else would answer the question.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from services.autoscaler.queueing import mgc, wait_percentile_mmc

__all__ = ["Decision", "Observation", "Policy", "PolicySettings"]


def _check_count(name: str, value: int, least: int = 0) -> None:
    # bool is an int, but True workers is a bug in the caller, not a count.
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")


def _check_seconds(name: str, value: float, *, positive: bool = False) -> None:
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a {kind} finite number, got {value!r}")


@dataclass(frozen=True)
class Observation:
    """What the master shows at one moment: the fleet, the queue and the recent load."""

    at_s: float
    """Monotonic seconds when observed (the caller's clock)."""
    workers: int
    """Workers the master lists as idle or busy (not offline, not lost)."""
    busy: int
    queued: int
    """Tasks waiting for a worker."""
    arrival_rate_per_s: float
    """Questions accepted per second, measured over the recent past."""
    service_time_s: float | None
    """Mean processing time of recent answers (None: none measured yet)."""
    service_cv2: float = 1.0
    """Squared coefficient of variation of the service time (1.0 when unknown)."""
    starting: int = 0
    """Workers the actuator started that have not registered yet."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.at_s):
            raise ValueError(f"at_s must be a finite time, got {self.at_s!r}")
        for name in ("workers", "busy", "queued", "starting"):
            _check_count(name, getattr(self, name))
        if self.busy > self.workers:
            raise ValueError(f"busy ({self.busy}) cannot exceed workers ({self.workers})")
        _check_seconds("arrival_rate_per_s", self.arrival_rate_per_s)
        if self.service_time_s is not None:
            _check_seconds("service_time_s", self.service_time_s, positive=True)
        _check_seconds("service_cv2", self.service_cv2)


@dataclass(frozen=True)
class PolicySettings:
    """The bounds and targets the policy keeps; validated on creation."""

    min_workers: int = 1
    """0 allowed: the first question then waits for a worker to start."""
    max_workers: int = 10
    latency_target_s: float = 15.0
    """A task's response time (wait + service) target."""
    latency_percentile: float = 0.95
    """The share of tasks to answer within latency_target_s: the KPI judges the p95 of latency."""
    utilization_low: float = 0.70
    utilization_high: float = 0.80
    scale_down_window_s: float = 60.0
    """Scale down only to the highest target recommended within this window."""
    cooldown_s: float = 10.0
    """At least this long between two changes of the target."""
    default_service_s: float = 10.0
    """Service time assumed before any is measured."""

    def __post_init__(self) -> None:
        _check_count("min_workers", self.min_workers)
        _check_count("max_workers", self.max_workers, least=1)
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers ({self.min_workers}) must not exceed max_workers ({self.max_workers})")
        _check_seconds("latency_target_s", self.latency_target_s, positive=True)
        if not 0 < self.latency_percentile < 1:
            raise ValueError(f"latency_percentile must be a fraction in (0, 1), got {self.latency_percentile!r}")
        if not 0 < self.utilization_low < self.utilization_high < 1:
            raise ValueError(
                "utilization band must satisfy 0 < utilization_low < utilization_high < 1, got "
                f"{self.utilization_low!r}..{self.utilization_high!r}"
            )
        _check_seconds("scale_down_window_s", self.scale_down_window_s)
        _check_seconds("cooldown_s", self.cooldown_s)
        _check_seconds("default_service_s", self.default_service_s, positive=True)


@dataclass(frozen=True)
class Decision:
    """A target number of workers, why, and what the model predicts there."""

    at_s: float
    current: int
    """Workers + starting."""
    target: int
    reason: str
    """One sentence a person reads in the log: why this target."""
    utilization: float
    """Predicted utilization at the target (may be >= 1 when even the maximum cannot keep up)."""
    predicted_wait_s: float | None
    """Predicted mean wait in queue at the target (None: unstable or no workers)."""
    observation: Observation

    @property
    def change(self) -> int:
        """Workers to add (positive) or remove (negative)."""
        return self.target - self.current

    @property
    def direction(self) -> str:
        """One of "up", "down" or "hold"."""
        return "up" if self.change > 0 else "down" if self.change < 0 else "hold"


def _predict(rate: float, service_s: float, cv2: float, servers: int) -> tuple[float, float | None]:
    """Utilization and mean wait at c servers; the wait is None when the queue is unstable or c is 0."""
    if servers == 0:
        return 0.0, None
    rho = rate * service_s / servers
    return (rho, mgc(rate, service_s, cv2, servers).mean_wait_s) if rho < 1 else (rho, None)


def response_quantile(p: float, rate: float, service_s: float, cv2: float, servers: int) -> float | None:
    """The p-quantile of the wait at c servers plus the mean service: what a task that waits as long as all but
    the slowest (1 - p) share of tasks is answered in; None when the queue is unstable.

    The wait's quantile is M/M/c's exact one scaled by (1 + cv2) / 2, as Allen-Cunneen scales the mean. The
    service's own spread is left out: no number of workers changes it.
    """
    if servers == 0 or rate * service_s >= servers:
        return None
    wait = wait_percentile_mmc(p, rate, service_s, servers) * (1 + cv2) / 2 if rate > 0 else 0.0
    return wait + service_s


def _workers(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def _outcome(
    target: int, rho: float, wait: float | None, response: float | None, percentile: float, target_s: float
) -> str:
    """What the model predicts at the target, in words."""
    if wait is None or response is None:
        return f"{_workers(target)}: utilization {rho:.0%}, the queue grows"
    verdict = "over" if response > target_s else "within"
    return (
        f"{_workers(target)}: utilization {rho:.0%}, predicted mean wait {wait:.1f} s, "
        f"p{percentile * 100:g} response {response:.1f} s {verdict} {target_s:g} s"
    )


class Policy:
    """Decides a target fleet size for each observation; remembers recent recommendations and the last change."""

    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        # Recent recommendations, newest last, targets strictly decreasing from oldest to newest: an older one
        # that is not higher than a newer one can never again be the window's highest, so it is dropped. The
        # length is thus bounded by max_workers + 1 however often decide is called.
        self._recent: deque[tuple[float, int]] = deque()
        self._last_change_s: float | None = None
        self._last_at_s: float | None = None

    def decide(self, observation: Observation) -> Decision:
        """The target for this observation; observations must come in time order."""
        obs, s = observation, self.settings
        if self._last_at_s is not None and obs.at_s < self._last_at_s:
            raise ValueError(f"observation at {obs.at_s} s is older than the previous one at {self._last_at_s} s")
        self._last_at_s = obs.at_s
        current = obs.workers + obs.starting
        recommended, why = self._recommend(obs, current)

        while self._recent and self._recent[-1][1] <= recommended:
            self._recent.pop()
        self._recent.append((obs.at_s, recommended))
        while self._recent[0][0] < obs.at_s - s.scale_down_window_s:
            self._recent.popleft()
        highest = self._recent[0][1]

        target, reason, cooldown = recommended, why, ""
        if recommended < current:
            # Scaling down on one low reading would undo the last scale-up at the first lull; wait until the
            # whole window asks for fewer.
            target = min(current, highest)
            if target > recommended:
                reason = (
                    f"{recommended} would do but {highest} were recommended within the last "
                    f"{s.scale_down_window_s:g} s; {why}"
                )
        if target != current and self._last_change_s is not None:
            left = s.cooldown_s - (obs.at_s - self._last_change_s)
            # From zero workers with work waiting nothing can flap, and nothing else will answer the question.
            from_zero = current == 0 and target > 0
            if left > 0 and not from_zero:
                verb = "up" if target > current else "down"
                cooldown, reason = f"cooldown, {left:.1f}s left: ", f"would go {verb} to {target}; {reason}"
                target = current
        if target != current:
            self._last_change_s = obs.at_s
        rate, service_s = obs.arrival_rate_per_s, self._service_s(obs)
        rho, wait = _predict(rate, service_s, obs.service_cv2, target)
        # The direction is the decision's own field (and the master's log line shows it): not repeated here.
        return Decision(obs.at_s, current, target, f"{cooldown}{reason}", rho, wait, obs)

    def _service_s(self, obs: Observation) -> float:
        return self.settings.default_service_s if obs.service_time_s is None else obs.service_time_s

    def _recommend(self, obs: Observation, current: int) -> tuple[int, str]:
        """The target the load asks for now, before stabilization and cooldown, and why."""
        s = self.settings
        rate, service_s, cv2, queued = obs.arrival_rate_per_s, self._service_s(obs), obs.service_cv2, obs.queued
        load = rate * service_s
        assumed = " (assumed)" if obs.service_time_s is None else ""
        what = f"{rate:.3g}/s x {service_s:.3g} s{assumed} = {load:.3g} busy on average"
        if queued:
            what += f", {queued} queued"
        budget = s.latency_target_s - service_s

        if load == 0 and queued == 0:
            target = max(s.min_workers, obs.busy)  # min <= max, and busy above max stays (never take a busy one)
            return target, f"nothing arriving or queued, {obs.busy} busy; {_workers(target)} (minimum {s.min_workers})"
        if budget <= 0:
            # No number of workers makes the service itself shorter; the most that can be done is not to wait.
            target = max(s.max_workers, obs.busy)
            return target, (
                f"{what}; the service alone ({service_s:.3g} s) reaches the {s.latency_target_s:g} s target, "
                f"so no fleet meets it: the maximum, {_workers(target)}"
            )

        needs: dict[str, int] = {}
        latency = self._latency_need(rate, service_s, cv2)
        needs["the latency target"] = s.max_workers + 1 if latency is None else latency
        needs["the backlog"] = math.ceil((queued + obs.busy) * service_s / s.latency_target_s - 1e-9)
        band_low, band_high = math.ceil(load / s.utilization_high - 1e-9), math.floor(load / s.utilization_low + 1e-9)
        # Inside the band the fleet stays (hysteresis); outside it moves the least distance into the band.
        needs["the band"] = min(max(current, band_low), band_high) if band_low <= band_high else band_low
        needs["busy workers"] = obs.busy
        binding = max(needs, key=lambda name: needs[name])  # the first named wins ties: latency before band
        need = needs[binding]
        target = min(max(need, s.min_workers), s.max_workers)
        if target < obs.busy:  # busy above the maximum: a scale-down must still not take a busy worker
            target, binding = obs.busy, "busy workers"

        rho, wait = _predict(rate, service_s, cv2, target)
        response = response_quantile(s.latency_percentile, rate, service_s, cv2, target)
        outcome = _outcome(target, rho, wait, response, s.latency_percentile, s.latency_target_s)
        if latency is None and target == s.max_workers:
            outcome += f", capped at the maximum: the latency target needs more than {s.max_workers}"
        elif need > s.max_workers and target == s.max_workers:
            outcome += f", capped at the maximum: {binding} needs {need}"
        elif rho < s.utilization_low:
            if target == s.min_workers and need < s.min_workers:
                cause = f"the minimum is {s.min_workers}"
            elif binding == "the band":
                cause = f"no whole number of workers puts {load:.3g} busy in it"
            else:
                cause = f"{binding} need {need}" if binding == "busy workers" else f"{binding} needs {need}"
            outcome += f", below the {s.utilization_low * 100:.0f}-{s.utilization_high:.0%} band because {cause}"
        return target, f"{what}; {outcome}"

    def _latency_need(self, rate: float, service_s: float, cv2: float) -> int | None:
        """The fewest workers whose predicted response quantile meets the target, or None if more than the maximum."""
        if rate == 0:
            return 0
        # Below floor(a) + 1 workers the queue is unstable; above the maximum the answer would not be used.
        for servers in range(math.floor(rate * service_s) + 1, self.settings.max_workers + 1):
            response = response_quantile(self.settings.latency_percentile, rate, service_s, cv2, servers)
            if response is not None and response <= self.settings.latency_target_s:
                return servers
        return None
