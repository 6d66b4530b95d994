"""Whether a run reached steady state, and its mean wait with a confidence interval, from its task records.

A queueing prediction is a steady-state mean; a measured mean is worth comparing with it only when the run
was long enough for the queue to forget how it started (empty) and to average out its slow swings. Here:

- **What the run realized, not what it was offered**: the arrival rate counted from the submissions after the
  warm-up; the service time as each task held its worker (finished - assigned) plus the hand-off, the
  median gap between a worker's finish and its next assignment when a task was already waiting (the worker
  is not free for the queue before then).
- **Wait**: the time in queue the model describes. A task that found a worker free (fewer than c tasks
  held, none queued) waited 0 in the model; what it measured is the master's dispatch latency, reported on
  its own. Every other task keeps its measured wait (first assigned - submitted).
- **Warm-up**: the tasks submitted in the first 5 relaxation times (below) are left out. The lab's runs start
  from an empty system, whose distance from steady state decays about as exp(-t / tau): after 5 tau, under
  1%. MSER-5 was tried and dropped: on simulated M/M/4 runs it cut deep into stretches already at steady
  state (after a high excursion), and with its cut (where longer than 5 tau) the interval covered the true
  mean less often (69-84% of runs against 84-88%). A backlog at the start that takes longer than 5 tau to
  clear needs a longer cut.
- **Confidence interval by batch means**: the kept waits in 10 consecutive batches, Student t on their means
  (95% nominal). Batches of a run as long as the rule below span 3.5 relaxation times or more each. On
  simulated M/M/4 runs of that length (80 seeds each at 30, 70 and 90%) the interval covered the Erlang C
  mean in 84-88% of runs, not 95%: waits are skewed and batches still a little correlated.
- **Run length**: 40 M/M/c relaxation times tau = E[S] / (c (1 - sqrt(rho))^2) (Morse's M/M/1 time, with
  the c servers' drain rate). The closer to saturation, the longer: x10 from 70% to 90%. Apart from that,
  the interval needs 800 tasks after the warm-up: at low load tau is short but few tasks wait, so there
  tasks, not time, limit the interval (``planned_run_s`` plans for both).
- **Prediction**: M/G/c by Tijms's interpolation for cv2 <= 1, (1 - cv2) W(M/D/c) + cv2 W(M/M/c), with
  Cosmetatos's M/D/c correction; above 1, Allen-Cunneen (``queueing.mgc``). Allen-Cunneen alone halves
  the M/M/c wait for fixed service times, which underestimates M/D/c with c > 1 at low load (by a third at
  30% with 4 workers); both are reported.
- **Agreement**: the prediction agrees within 10% when the band prediction +-10% meets the measured 95%
  interval, judged only at steady state and with MIN_TASKS tasks after the warm-up.

Times are in seconds, rates per second. Pure: no I/O; ``simulate`` is a small M/G/c queue for tests.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab.analysis import queueing

RELAXATIONS = 40
"""Relaxation times a run needs: the warm-up's 5, and 10 batches of 3.5."""
WARMUP_RELAXATIONS = 5
"""Relaxation times left out at the start as warm-up."""
MIN_TASKS = 800
"""Tasks the interval needs after the warm-up, whatever the load: 10 batches of 80."""
PLAN_MARGIN = 0.02
"""Plan a run at this much more utilization than its target: the realized load wobbles around the target
(Poisson arrivals over a 4-minute run at 80%: +-1.5 points), and the rule is steep near saturation."""
BATCHES = 10
TOLERANCE = 0.10
"""How far a prediction may be from the measured mean wait (a fraction of the prediction)."""
_Z975 = 1.959963984540054


def relaxation_time_s(utilization: float, servers: int, mean_service_s: float) -> float:
    """The M/M/c relaxation time E[S] / (c (1 - sqrt(rho))^2): how long the queue takes to forget its start.

    Infinite at rho >= 1 (no steady state to reach)."""
    if servers < 1 or not mean_service_s > 0 or not utilization >= 0:
        raise ValueError(
            f"need servers >= 1, mean_service_s > 0, utilization >= 0; got {servers}, {mean_service_s}, {utilization}"
        )
    if utilization >= 1:
        return math.inf
    return mean_service_s / (servers * (1 - math.sqrt(utilization)) ** 2)


def run_length_s(utilization: float, servers: int, mean_service_s: float) -> float:
    """Seconds of arrivals a run needs to reach and measure steady state at this load: RELAXATIONS relaxation
    times (rising with the load; infinite at rho >= 1)."""
    return RELAXATIONS * relaxation_time_s(utilization, servers, mean_service_s)


def planned_run_s(target_utilization: float, servers: int, mean_service_s: float) -> float:
    """Seconds to run a target load so that the realized run meets ``run_length_s`` (planned at PLAN_MARGIN
    above the target) and has MIN_TASKS arrivals (10% more planned), rounded up to 10 s."""
    if target_utilization + PLAN_MARGIN >= 1:
        raise ValueError(f"{target_utilization:.0%} is too close to saturation for a run to reach steady state")
    rate = target_utilization * servers / mean_service_s
    relax = RELAXATIONS * relaxation_time_s(target_utilization + PLAN_MARGIN, servers, mean_service_s)
    return 10 * math.ceil(max(relax, 1.1 * MIN_TASKS / rate) / 10)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (Cornish-Fisher; within 0.001 for df >= 4)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    z, v = _Z975, float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def batch_means(values: Sequence[float], batches: int = BATCHES) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` with its 95% interval from `batches` consecutive batch means.

    The first len % batches values are left out so the batches are equal. NaN bounds with fewer than 2
    values a batch."""
    size = len(values) // batches
    if size < 2:
        mean = float(np.mean(values)) if len(values) else math.nan
        return mean, math.nan, math.nan
    used = np.asarray(values[len(values) - size * batches :], dtype="float64")
    means = used.reshape(batches, size).mean(axis=1)
    mean = float(means.mean())
    half = t_quantile_975(batches - 1) * float(means.std(ddof=1)) / math.sqrt(batches)
    return mean, mean - half, mean + half


def mgc_wait_s(arrival_rate_per_s: float, mean_service_s: float, service_cv2: float, servers: int) -> float:
    """M/G/c mean wait: Tijms's interpolation (1 - cv2) W(M/D/c) + cv2 W(M/M/c) for cv2 <= 1, with Cosmetatos's
    W(M/D/c) = W(M/M/c) (1 + (1 - rho)(c - 1)(sqrt(4 + 5c) - 2) / (16 rho c)) / 2; Allen-Cunneen above 1.

    Exact for c = 1 (Pollaczek-Khinchine). Raises ValueError when utilization >= 1."""
    if service_cv2 > 1:
        return queueing.mgc(arrival_rate_per_s, mean_service_s, service_cv2, servers).mean_wait_s
    exponential = queueing.mmc(arrival_rate_per_s, mean_service_s, servers)
    rho, c = exponential.utilization, servers
    if rho == 0:
        return 0.0
    fixed = exponential.mean_wait_s * (1 + (1 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * rho * c)) / 2
    return (1 - service_cv2) * fixed + service_cv2 * exponential.mean_wait_s


@dataclass(frozen=True)
class SteadyState:
    """What a run's task records say about its steady state, its mean wait and the M/G/c prediction."""

    servers: int
    tasks: int
    trimmed: int
    """Tasks left out at the start as warm-up."""
    span_s: float
    """Seconds from the first submission to the last."""
    arrival_rate_per_s: float
    service_mean_s: float
    service_cv2: float
    handoff_s: float
    dispatch_s: float
    """Mean wait of the tasks that found a worker free: the master's own latency, not queueing."""
    utilization: float
    mean_wait_s: float
    ci_low_s: float
    ci_high_s: float
    raw_mean_wait_s: float
    """Mean of first assigned - submitted over all tasks, untrimmed, dispatch latency included."""
    predicted_wait_s: float
    allen_cunneen_wait_s: float
    needed_s: float
    """The run length the load needs (``run_length_s`` at the realized utilization)."""

    @property
    def steady(self) -> bool:
        """Whether the run can be compared with a steady-state prediction."""
        return self.utilization < 1 and self.span_s >= self.needed_s

    @property
    def enough_tasks(self) -> bool:
        """Whether MIN_TASKS tasks are left after the warm-up for the interval."""
        return self.tasks - self.trimmed >= MIN_TASKS

    @property
    def verdict(self) -> str:
        """ "steady", or "not at steady state (...)" with the reason, or "steady, too few tasks (...)"."""
        if self.utilization >= 1:
            return f"not at steady state (utilization {self.utilization:.0%} >= 100%: the queue grows)"
        if self.span_s < self.needed_s:
            return f"not at steady state (run {self.span_s:.0f} s, needs >= {self.needed_s:.0f} s)"
        if not self.enough_tasks:
            return f"steady, too few tasks ({self.tasks - self.trimmed} after the warm-up, needs >= {MIN_TASKS})"
        return "steady"

    @property
    def error(self) -> float:
        """Measured over predicted mean wait, minus 1 (NaN without a prediction)."""
        if not self.predicted_wait_s > 0:
            return math.nan
        return self.mean_wait_s / self.predicted_wait_s - 1

    @property
    def agrees(self) -> bool | None:
        """Whether prediction +-10% meets the 95% interval; None when not at steady state, with too few tasks
        or no interval."""
        if not (self.steady and self.enough_tasks) or math.isnan(self.ci_low_s) or math.isnan(self.predicted_wait_s):
            return None
        low, high = self.predicted_wait_s * (1 - TOLERANCE), self.predicted_wait_s * (1 + TOLERANCE)
        return bool(low <= self.ci_high_s and high >= self.ci_low_s)

    def row(self) -> dict[str, object]:
        """The figures of a comparison table, waits in ms and the utilization in percent."""
        agreement = {True: f"within {TOLERANCE:.0%}", False: "no", None: "n/a"}[self.agrees]

        def ms(seconds: float) -> float:
            return round(1000 * float(seconds), 2)

        return {
            "utilization_pct": round(100 * float(self.utilization), 1),
            "run_s": round(float(self.span_s)),
            "needed_s": round(self.needed_s) if math.isfinite(self.needed_s) else math.inf,
            "tasks": self.tasks,
            "trimmed": self.trimmed,
            "measured_ms": ms(self.mean_wait_s),
            "ci_low_ms": ms(self.ci_low_s),
            "ci_high_ms": ms(self.ci_high_s),
            "predicted_ms": ms(self.predicted_wait_s),
            "allen_cunneen_ms": ms(self.allen_cunneen_wait_s),
            "error_pct": round(100 * float(self.error), 1),
            "agrees": agreement,
            "verdict": self.verdict,
        }


def _handoff_s(submitted: np.ndarray, assigned: np.ndarray, finished: np.ndarray, worker: Sequence[str]) -> float:
    """Median gap between a worker's finish and its next assignment, over next tasks already waiting."""
    frame = pd.DataFrame({"w": list(worker), "s": submitted, "a": assigned, "f": finished}).sort_values(["w", "a"])
    same = frame["w"].eq(frame["w"].shift())
    waiting = same & (frame["s"] < frame["f"].shift())
    gaps = (frame["a"] - frame["f"].shift())[waiting]
    gaps = gaps[gaps >= 0]
    return float(gaps.median()) if len(gaps) else 0.0


def assess(
    submitted_s: Sequence[float],
    assigned_s: Sequence[float],
    finished_s: Sequence[float],
    servers: int,
    worker: Sequence[str] | None = None,
) -> SteadyState:
    """The steady state of one run from each task's submission, first assignment and finish (seconds, any
    origin) and, when known, its worker (for the hand-off). Needs at least two tasks."""
    order = np.argsort(np.asarray(submitted_s, dtype="float64"), kind="stable")
    sub = np.asarray(submitted_s, dtype="float64")[order]
    start = np.asarray(assigned_s, dtype="float64")[order]
    end = np.asarray(finished_s, dtype="float64")[order]
    if len(sub) < 2:
        raise ValueError(f"need at least 2 tasks, got {len(sub)}")
    handoff = 0.0 if worker is None else _handoff_s(sub, start, end, [worker[i] for i in order])
    mean_service, cv2 = queueing.service_stats(list(np.clip(end - start, 0.0, None)))
    mean_service += handoff
    cv2 = cv2 * ((mean_service - handoff) / mean_service) ** 2
    # Held workers and queued tasks at each submission, the task itself excluded (assigned after it came).
    held = np.searchsorted(np.sort(start), sub, "left") - np.searchsorted(np.sort(end + handoff), sub, "right")
    queued = np.arange(len(sub)) - np.searchsorted(np.sort(start), sub, "left")
    free = (held < servers) & (queued <= 0)
    raw = start - sub
    waits = np.where(free, 0.0, raw)
    # The warm-up's length from the whole run's load; the rates compared come after it.
    whole_rate = (len(sub) - 1) / (sub[-1] - sub[0]) if sub[-1] > sub[0] else math.inf
    whole_rho = whole_rate * mean_service / servers
    warmup = WARMUP_RELAXATIONS * relaxation_time_s(whole_rho, servers, mean_service) if whole_rho < 1 else math.inf
    # A run shorter than its warm-up keeps its second half: too short either way, as its verdict says.
    cut = min(int(np.searchsorted(sub, sub[0] + warmup, "left")), len(sub) // 2)
    kept = waits[cut:]
    window = sub[-1] - sub[cut]
    rate = (len(kept) - 1) / window if window > 0 else math.nan
    rho = queueing.utilization(rate, mean_service, servers) if math.isfinite(rate) else math.inf
    mean, low, high = batch_means(list(kept))
    predicted = allen_cunneen = math.nan
    if rho < 1:
        predicted = mgc_wait_s(rate, mean_service, cv2, servers)
        allen_cunneen = queueing.mgc(rate, mean_service, cv2, servers).mean_wait_s
    return SteadyState(
        servers=servers,
        tasks=len(sub),
        trimmed=cut,
        span_s=float(sub[-1] - sub[0]),
        arrival_rate_per_s=rate,
        service_mean_s=mean_service,
        service_cv2=cv2,
        handoff_s=handoff,
        dispatch_s=float(raw[free].mean()) if free.any() else math.nan,
        utilization=rho,
        mean_wait_s=mean,
        ci_low_s=low,
        ci_high_s=high,
        raw_mean_wait_s=float(raw.mean()),
        predicted_wait_s=predicted,
        allen_cunneen_wait_s=allen_cunneen,
        needed_s=run_length_s(rho, servers, mean_service) if rho < 1 else math.inf,
    )


def assess_tasks(tasks: pd.DataFrame, servers: int) -> SteadyState:
    """``assess`` on a run's task frame (``lab.runs.schema``: timestamps in ms): its answered tasks with a
    submission, an assignment and a finish."""
    answered = tasks[tasks["outcome"] == "answered"]
    stamps = pd.DataFrame(
        {c: pd.to_numeric(answered[c], errors="coerce") for c in ("submitted", "assigned", "finished")}
    )
    stamps["worker"] = answered["worker_id"].astype("str")
    stamps = stamps.dropna()
    return assess(
        (stamps["submitted"] / 1000).tolist(),
        (stamps["assigned"] / 1000).tolist(),
        (stamps["finished"] / 1000).tolist(),
        servers,
        stamps["worker"].tolist(),
    )


def simulate(
    arrival_rate_per_s: float,
    service: Callable[[random.Random], float],
    servers: int,
    tasks: int,
    seed: int,
    backlog: int = 0,
) -> tuple[list[float], list[float], list[float], list[str]]:
    """A first-come-first-served queue with `servers` and `tasks` Poisson arrivals with service times drawn
    by `service`, empty at time 0 unless the first `backlog` tasks all come then; returns each task's
    submission, assignment, finish and server, as ``assess`` takes them."""
    rng = random.Random(seed)
    free = [(0.0, k) for k in range(servers)]
    now = 0.0
    submitted, assigned, finished, worker = [], [], [], []
    for index in range(tasks):
        if index >= backlog:
            now += rng.expovariate(arrival_rate_per_s)
        at, server = heapq.heappop(free)
        begin = max(now, at)
        done = begin + service(rng)
        heapq.heappush(free, (done, server))
        submitted.append(now)
        assigned.append(begin)
        finished.append(done)
        worker.append(f"server-{server}")
    return submitted, assigned, finished, worker
