"""Live statistics of a load run: an accumulator the loops feed as questions go out and answers come back,
and the snapshot the live views (terminal table, log lines, notebook widget) show every few seconds.

No I/O and no clock of its own: every time is passed in (time.monotonic()), so tests drive it by hand."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from lab.analysis.stats import percentile
from services.protocol import ScalingReport, StatusReport

__all__ = ["RECENT_S", "LiveSnapshot", "LiveStats"]

RECENT_S = 10.0  # the window of the recent answer rate: long enough to be steady at a few answers per second


@dataclass(frozen=True)
class LiveSnapshot:
    """A run so far: counts, the master's queue (last read), answer rates and latency percentiles (seconds).

    `sent` = `answered` + `failed` + `in_flight`; `failed` is refused in the ack or no ack at all; latencies
    are counted as the run's summary counts them (from the scheduled send in an open loop).
    """

    title: str
    elapsed_s: float
    sent: int
    answered: int
    failed: int
    in_flight: int
    queue: int | None  # None until the master's status was read
    recent_per_s: float  # answers per second over the last `recent_window_s`
    overall_per_s: float  # answers per second since the start
    p50_s: float | None  # None until the first answer
    p95_s: float | None
    p99_s: float | None
    planned: int | None = None  # questions the schedule holds (open loop)
    duration_s: float | None = None  # seconds of asking (closed loop) or of the schedule
    recent_window_s: float = RECENT_S
    workers: int | None = None  # idle and busy workers, from the same read as `queue`
    scaling: ScalingReport | None = None  # the autoscaler's last decision, when the master has one


class LiveStats:
    """Counts sends, failures and answers, and keeps every latency, for `snapshot`."""

    def __init__(
        self,
        title: str,
        started: float,
        *,
        planned: int | None = None,
        duration_s: float | None = None,
        recent_s: float = RECENT_S,
    ) -> None:
        if recent_s <= 0:
            raise ValueError(f"recent_s must be > 0, got {recent_s}")
        self.title = title
        self.started = started  # the loops set it again when sending really starts
        self.planned = planned
        self.duration_s = duration_s
        self.recent_s = recent_s
        self.sent = 0
        self.answered = 0
        self.failed = 0
        self.queue: int | None = None
        self.workers: int | None = None
        self.scaling: ScalingReport | None = None
        self._latencies: list[float] = []  # kept sorted at each snapshot: re-sorting a sorted list is linear
        self._recent: deque[float] = deque()  # answer times within the recent window

    def on_sent(self) -> None:
        """A question went out."""
        self.sent += 1

    def on_failed(self) -> None:
        """A question was refused in its ack, or no ack came."""
        self.failed += 1

    def on_answered(self, at: float, latency_s: float) -> None:
        """A question got its first answer at `at` (monotonic), `latency_s` after it was due."""
        self.answered += 1
        self._latencies.append(latency_s)
        self._recent.append(at)

    def on_queue(self, depth: int | None) -> None:
        """The master's queue length as last read (None: the read failed, keep the last one)."""
        if depth is not None:
            self.queue = depth

    def on_status(self, report: StatusReport | None) -> None:
        """The master's status as last read: queue, workers and the autoscaler's last decision (None: the read
        failed, keep the last ones)."""
        if report is not None:
            self.queue = report.queue_length
            self.workers = report.idle + report.busy
            self.scaling = report.scaling

    def snapshot(self, now: float) -> LiveSnapshot:
        """The run at `now` (monotonic)."""
        elapsed = max(now - self.started, 0.0)
        cutoff = now - self.recent_s
        while self._recent and self._recent[0] < cutoff:
            self._recent.popleft()
        # Answers are fed by polls, a little out of order: count exactly what falls in the window.
        recent = sum(cutoff <= at <= now for at in self._recent)
        window = min(self.recent_s, elapsed)
        self._latencies.sort()
        p50, p95, p99 = (percentile(self._latencies, q) if self._latencies else None for q in (50, 95, 99))
        return LiveSnapshot(
            title=self.title,
            elapsed_s=elapsed,
            sent=self.sent,
            answered=self.answered,
            failed=self.failed,
            in_flight=max(self.sent - self.answered - self.failed, 0),
            queue=self.queue,
            recent_per_s=recent / window if window > 0 else 0.0,
            overall_per_s=self.answered / elapsed if elapsed > 0 else 0.0,
            p50_s=p50,
            p95_s=p95,
            p99_s=p99,
            planned=self.planned,
            duration_s=self.duration_s,
            recent_window_s=self.recent_s,
            workers=self.workers,
            scaling=self.scaling,
        )
