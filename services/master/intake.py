"""Users' questions on their way in: the limits a question must pass before it becomes a task."""

from __future__ import annotations

import math
import secrets
import uuid
from dataclasses import dataclass

from services.master.backlog import Backlog
from services.master.dispatch import Dispatcher, Task
from services.master.limits import InFlight, RateLimiter
from services.master.settings import MasterSettings
from services.protocol import AiResponse, UserQuery


@dataclass(frozen=True)
class Refusal:
    """Why a question was not accepted: `reason` for the metrics (`swarm_refusals_total{reason}`), `message`
    for the user."""

    reason: str
    message: str


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


class Intake:
    """The limits on questions: per session, per client address, and the queue's bound (the latency target).

    Only an accepted question counts against the rates and the unanswered counts: a refused one changes
    nothing."""

    def __init__(self, settings: MasterSettings) -> None:
        self.settings = settings
        self.session_rates = RateLimiter(settings.rate_per_minute)
        self.address_rates = RateLimiter(settings.rate_per_minute_per_address)
        self.address_in_flight = InFlight()
        self.backlog = Backlog(round(settings.latency_target_seconds * 1000))

    def admit(
        self, query: UserQuery, session_id: str, address: str, now_ms: int, dispatcher: Dispatcher
    ) -> Task | Refusal:
        """The new task a question becomes, or why it may not.

        The task keeps the question exactly as the user sent it (leading and trailing whitespace too): the
        answer echoes it, and baseline clients match answers by it. A question of whitespace alone is empty;
        the length limit counts every character."""
        refused = self.refusal(query.query, session_id, address, now_ms, dispatcher)
        if refused is not None:
            return refused
        task = Task(
            task_id=str(uuid.uuid4()),
            session_id=session_id,
            query=query.query,
            submitted_ms=now_ms,
            api_key=(query.apiKey or "").strip(),
            model=query.model or None,
        )
        self.session_rates.record(session_id, now_ms)
        self.address_rates.record(address, now_ms)
        self.address_in_flight.add(task.task_id, address)
        return task

    def refusal(self, text: str, session_id: str, address: str, now_ms: int, dispatcher: Dispatcher) -> Refusal | None:
        """Why a question may not be accepted now, None when it may (nothing is recorded either way)."""
        s = self.settings
        if not text.strip():
            return Refusal("empty", "the question is empty")
        if len(text) > s.max_query_chars:
            return Refusal("too_long", f"the question is too long: {len(text)} characters, at most {s.max_query_chars}")
        if dispatcher.unfinished(session_id) >= s.max_in_flight_per_session:
            n = s.max_in_flight_per_session
            return Refusal(
                "session_in_flight", f"too many questions in flight: at most {n} at once; wait for an answer"
            )
        if wait := self.session_rates.wait_ms(session_id, now_ms):
            n = s.rate_per_minute
            return Refusal(
                "session_rate", f"too many questions: at most {n} per minute; try again in {_seconds(wait)} s"
            )
        if self.address_in_flight.of(address) >= s.max_in_flight_per_address:
            n = s.max_in_flight_per_address
            return Refusal(
                "address_in_flight",
                f"too many questions in flight from your address: at most {n} at once; wait for an answer",
            )
        if wait := self.address_rates.wait_ms(address, now_ms):
            n = s.rate_per_minute_per_address
            return Refusal(
                "address_rate",
                f"too many questions from your address: at most {n} per minute; try again in {_seconds(wait)} s",
            )
        if refused := self._busy(address, now_ms, dispatcher):
            return refused
        return None

    def _busy(self, address: str, now_ms: int, dispatcher: Dispatcher) -> Refusal | None:
        """The queue's bound: the latency target for everyone, then its fair share for an address that already
        has questions in flight (unless an idle worker takes the question at once)."""
        if wait_ms := self.backlog.retry_after_ms(dispatcher, now_ms):
            return Refusal("too_busy", f"too busy: try again in {_seconds(wait_ms)} s")
        held = self.address_in_flight.of(address)
        if not held or self.backlog.takes_at_once(dispatcher):
            return None
        share = self.backlog.fair_share(dispatcher, now_ms, self.address_in_flight.keys - 1)
        if share is None or held < share:
            return None
        wait = _seconds(self.backlog.step_ms())
        return Refusal(
            "address_share",
            f"too busy: your address has its share of the queue ({held} in flight); try again in {wait} s",
        )

    def answered(self, task: Task, now_ms: int) -> None:
        """A worker's result for `task` was accepted: its service time counts, its address has one fewer."""
        self.backlog.observe(now_ms - task.assigned_ms)
        self.address_in_flight.done(task.task_id)

    def failed(self, task: Task) -> None:
        """`task` failed for good (its attempts were lost): its address has one fewer."""
        self.address_in_flight.done(task.task_id)

    def forget_idle(self, now_ms: int) -> None:
        """Drop the rates of sessions and addresses that asked nothing in the last minute."""
        self.session_rates.forget_idle(now_ms)
        self.address_rates.forget_idle(now_ms)


def refusal(text: str, reason: str, now_ms: int) -> AiResponse:
    """A refused question told as an `ai-response`, for a client that did not ask for the `user-query`
    acknowledgement (a baseline client shows only events): `response` and `error` say why."""
    return AiResponse(
        query=text, response=f"Not accepted: {reason}", workerId="", processingTime=0, timestamp=now_ms, error=reason
    )


def new_session_id() -> str:
    """An unguessable session id (a bearer secret: never published, never logged)."""
    return secrets.token_urlsafe(24)
