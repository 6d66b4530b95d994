"""What a load run sent and what became of each question."""

from __future__ import annotations

from dataclasses import dataclass

from lab.analysis.stats import percentile
from lab.loadgen.client import Exchange

__all__ = ["LoadResult", "Question"]


@dataclass
class Question:
    """One question a load user sent, and what became of it (times are time.monotonic())."""

    user: int
    query: str
    scheduled_at: float | None = None  # when it was due (open loop); None in a closed loop
    sent_at: float = 0.0
    exchange: Exchange | None = None  # None until acknowledged, and for a send that got no ack
    error: str = ""  # the refusal in the ack, or why no ack came

    @property
    def acknowledged(self) -> bool:
        """The master accepted it (the ack carries a task id)."""
        return self.exchange is not None and bool(self.exchange.task_id)

    @property
    def refused(self) -> bool:
        """The master answered the send with an error instead of a task id."""
        return self.exchange is not None and not self.exchange.task_id

    @property
    def failed(self) -> bool:
        """No ack came at all (timeout or lost connection)."""
        return self.exchange is None and bool(self.error)

    @property
    def answered_at(self) -> float | None:
        """When the first answer arrived."""
        return None if self.exchange is None else self.exchange.answered_at

    @property
    def send_lag_s(self) -> float:
        """How late the send was against its schedule (0 in a closed loop)."""
        return 0.0 if self.scheduled_at is None else self.sent_at - self.scheduled_at

    def latency_s(self, from_scheduled: bool = True) -> float | None:
        """Seconds to the first answer, from the scheduled time (so a late send counts) or the actual send."""
        if self.answered_at is None:
            return None
        since = self.scheduled_at if from_scheduled and self.scheduled_at is not None else self.sent_at
        return self.answered_at - since


@dataclass
class LoadResult:
    """Every question of a run with its user, and the run's start and end (time.monotonic())."""

    kind: str  # "open" or "closed"
    users: int
    started: float
    ended: float
    questions: list[Question]

    def exchanges(self) -> list[tuple[int, Exchange]]:
        """(user index, exchange) of every acknowledged question, in send order."""
        return [(q.user, q.exchange) for q in self.questions if q.exchange is not None and q.acknowledged]

    @property
    def sent(self) -> int:
        """Questions sent (whatever became of them)."""
        return len(self.questions)

    @property
    def acknowledged(self) -> int:
        """Questions the master accepted."""
        return sum(q.acknowledged for q in self.questions)

    @property
    def refused(self) -> int:
        """Questions the master refused in its ack (a limit, bad input)."""
        return sum(q.refused for q in self.questions)

    @property
    def failed(self) -> int:
        """Questions that got no ack at all."""
        return sum(q.failed for q in self.questions)

    @property
    def answered(self) -> int:
        """Accepted questions with at least one answer."""
        return sum(q.answered_at is not None for q in self.questions)

    @property
    def unanswered(self) -> int:
        """Accepted questions still without an answer when the run ended."""
        return self.acknowledged - self.answered

    @property
    def duplicates(self) -> int:
        """Answers beyond the first one of each question."""
        return sum(max(len(e.answers) - 1, 0) for _, e in self.exchanges())

    def latencies_s(self, from_scheduled: bool = True) -> list[float]:
        """Seconds to the first answer of each answered question, in send order (see Question.latency_s)."""
        values = (q.latency_s(from_scheduled) for q in self.questions)
        return [v for v in values if v is not None]

    def send_lags_s(self) -> list[float]:
        """How late each send was against its schedule (open loop)."""
        return [q.send_lag_s for q in self.questions if q.sent_at]

    def max_send_lag_s(self) -> float:
        """The latest send against its schedule; 0 without sends."""
        return max(self.send_lags_s(), default=0.0)

    def throughput_per_s(self) -> float:
        """Answers per second from the start of the run to the last answer; 0 without answers."""
        last = max((q.answered_at for q in self.questions if q.answered_at is not None), default=None)
        return 0.0 if last is None or last <= self.started else self.answered / (last - self.started)

    def summary(self) -> dict[str, float]:
        """Counts, send lag and latency percentiles, throughput: one flat dict for printing or JSON."""
        lags, latencies = self.send_lags_s(), self.latencies_s()
        figures: dict[str, float] = {
            "users": self.users,
            "seconds": round(self.ended - self.started, 2),
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "refused": self.refused,
            "failed": self.failed,
            "answered": self.answered,
            "unanswered": self.unanswered,
            "duplicates": self.duplicates,
            "throughput_per_s": round(self.throughput_per_s(), 1),
        }
        for name, values in (("send_lag_ms", lags), ("latency_ms", latencies)):
            for q in (50, 99):
                figures[f"{name}_p{q}"] = round(1000 * percentile(values, q), 1)
            figures[f"{name}_max"] = round(1000 * max(values, default=float("nan")), 1)
        return figures
