"""What the autoscaler sees: the master's status and metrics, turned into a policy `Observation`.

The master's counters are cumulative; the arrival rate and the service times of the recent past are the
differences between the newest read and the oldest one within the measuring window. The service time's squared
coefficient of variation comes from the processing-time histogram, each answer counted at the midpoint of its
bucket: that leaves out the spread inside each bucket (all answers in one bucket read as cv2 = 0), an
approximation the M/G/c model's (1 + cv2) / 2 factor tolerates better than a guess would.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from services.autoscaler.client import MasterUnavailableError
from services.autoscaler.policy import Observation
from services.protocol import StatusReport

# The master's metric families (services/master/metrics.py): its task outcomes and the workers' processing time.
TASKS = "swarm_tasks"
ACCEPTED = "accepted"
PROCESSING = "swarm_processing_seconds"
UNKNOWN_CV2 = 1.0  # the exponential distribution's: what M/M/c assumes
SHORTEST_SERVICE_S = 0.001  # a mean of 0 (instant offline answers) is read as this: the policy needs S > 0


@dataclass(frozen=True)
class Counters:
    """The master's cumulative counts at one read."""

    accepted: float
    """Questions accepted since the master started."""
    processed: float
    """Answers whose processing time was measured."""
    processing_s: float
    """Their processing times, summed."""
    buckets: tuple[tuple[float, float], ...]
    """The processing-time histogram: (upper bound in seconds, answers at or below it), ascending, +inf last."""

    def went_back_from(self, older: Counters) -> bool:
        """Whether a counter is lower than in `older`: the master restarted in between."""
        return self.accepted < older.accepted or self.processed < older.processed


def parse_metrics(text: str) -> Counters:
    """The counters the autoscaler needs from the master's Prometheus text; ValueError when they are missing."""
    accepted = 0.0  # a labelled counter has no sample before its first increment
    histogram: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        if family.name == TASKS:
            for sample in family.samples:
                if sample.name == f"{TASKS}_total" and sample.labels.get("outcome") == ACCEPTED:
                    accepted = sample.value
        elif family.name == PROCESSING:
            for sample in family.samples:
                if sample.name == f"{PROCESSING}_bucket":
                    buckets.append((float(sample.labels["le"]), sample.value))
                else:
                    histogram[sample.name.removeprefix(PROCESSING)] = sample.value
    if "_count" not in histogram or "_sum" not in histogram or not buckets:
        raise ValueError(f"the metrics have no {PROCESSING} histogram: is this the master's /metrics?")
    return Counters(accepted, histogram["_count"], histogram["_sum"], tuple(sorted(buckets)))


def bucket_cv2(buckets: Sequence[tuple[float, float]], mean_s: float) -> float:
    """The squared coefficient of variation of the answers in a cumulative histogram (bucket midpoints; the
    last, unbounded bucket at its lower bound), relative to the exact `mean_s`; 1.0 with fewer than 2 answers."""
    counts: list[tuple[float, float]] = []  # (midpoint, answers in the bucket)
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        n = cumulative - below
        if n > 0:
            counts.append((lower if math.isinf(upper) else (lower + upper) / 2, n))
        lower, below = (lower if math.isinf(upper) else upper), cumulative
    total = sum(n for _, n in counts)
    if total < 2 or mean_s <= 0:
        return UNKNOWN_CV2
    # Around the midpoints' own mean: answers that all fall in one bucket have no spread the histogram can show.
    centre = sum(m * n for m, n in counts) / total
    variance = sum(n * (m - centre) ** 2 for m, n in counts) / total
    return variance / mean_s**2


@dataclass(frozen=True)
class Load:
    """The recent load: arrivals per second and the service times of recent answers."""

    arrival_rate_per_s: float
    service_time_s: float | None
    service_cv2: float


def load_between(older: Counters, newer: Counters, seconds: float) -> Load:
    """The load between two reads `seconds` apart. Without answers in between, the service time and its cv2 are
    those of every answer since the master started (None and 1.0 before the first)."""
    rate = max(0.0, newer.accepted - older.accepted) / seconds if seconds > 0 else 0.0
    answers = newer.processed - older.processed
    if answers > 0:
        mean = max(SHORTEST_SERVICE_S, (newer.processing_s - older.processing_s) / answers)
        deltas = [(upper, n - old) for (upper, n), (_, old) in zip(newer.buckets, older.buckets, strict=False)]
        same_buckets = [u for u, _ in newer.buckets] == [u for u, _ in older.buckets]
        return Load(rate, mean, bucket_cv2(deltas if same_buckets else newer.buckets, mean))
    if newer.processed > 0:
        mean = max(SHORTEST_SERVICE_S, newer.processing_s / newer.processed)
        return Load(rate, mean, bucket_cv2(newer.buckets, mean))
    return Load(rate, None, UNKNOWN_CV2)


class Window:
    """The reads of the last `seconds`; the load is measured from the oldest to the newest."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._reads: deque[tuple[float, Counters]] = deque()

    def add(self, at_s: float, counters: Counters) -> Load | None:
        """Add a read taken at monotonic `at_s`; the load over the window, None until there are two reads (the
        first read, or the first after the master restarted and its counters began again)."""
        if self._reads and counters.went_back_from(self._reads[-1][1]):
            self._reads.clear()
        self._reads.append((at_s, counters))
        while len(self._reads) > 2 and at_s - self._reads[1][0] >= self.seconds:
            self._reads.popleft()  # the second oldest still spans the window: the oldest is not needed
        if len(self._reads) < 2:
            return None
        (first_at, first), (last_at, last) = self._reads[0], self._reads[-1]
        return load_between(first, last, last_at - first_at)


@dataclass(frozen=True)
class Seen:
    """One observation and the idle workers it saw (the ones a scale-down may take)."""

    observation: Observation
    idle_workers: list[str]


class MasterReads(Protocol):
    """What the observer reads of the master (MasterClient has it)."""

    async def status(self) -> StatusReport:
        """GET /api/status."""
        ...

    async def metrics(self) -> str:
        """GET /metrics."""
        ...


class Observer:
    """Reads the master (status, then metrics) and builds observations; raises MasterUnavailableError when it
    does not answer, so that the caller holds instead of deciding on missing data."""

    def __init__(self, master: MasterReads, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._master = master
        self._window = Window(window_s)
        self._clock = clock

    async def observe(self, actuated: int) -> Seen | None:
        """The master's state now, with `actuated` the workers the actuator runs or has asked for (those it
        counts that the master does not list yet are starting). None until the load can be measured."""
        status = await self._master.status()
        text = await self._master.metrics()
        at_s = self._clock()
        try:
            counters = parse_metrics(text)
        except ValueError as e:
            raise MasterUnavailableError(f"GET /metrics: {e}") from None
        load = self._window.add(at_s, counters)
        if load is None:
            return None
        listed = [w for w in status.workers if w.state in ("idle", "busy")]
        busy = sum(w.state == "busy" for w in listed)
        observation = Observation(
            at_s=at_s,
            workers=len(listed),
            busy=busy,
            queued=status.queue_length,
            arrival_rate_per_s=load.arrival_rate_per_s,
            service_time_s=load.service_time_s,
            service_cv2=load.service_cv2,
            starting=max(0, actuated - len(listed)),
        )
        return Seen(observation, [w.worker_id for w in listed if w.state == "idle"])
