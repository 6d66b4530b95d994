"""Socket.IO payloads of the wire contract (default namespace), in both directions.

The master builds these and dumps them with `dump()`; clients read what arrives with
`validate(Model, data)`. Keys are camelCase, as in the baseline. Extension keys have defaults,
so a payload from the original master (without them) still reads.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from services.protocol.messages import Message

Count = Annotated[int, Field(ge=0)]
WorkerStateName = Literal["idle", "busy", "offline", "lost"]


class Payload(Message):
    """Base of every Socket.IO payload and REST body: `dump()` gives the JSON object to send."""

    kind: ClassVar[str] = "payload"

    def dump(self) -> dict[str, Any]:
        """The JSON object sent on the wire, every key present."""
        return self.model_dump(mode="json")


class UserQuery(Payload):
    """`user-query` (client -> master): the question and an optional key of the user's own."""

    kind: ClassVar[str] = "user-query"
    query: str
    apiKey: str | None = None
    model: str | None = None  # extension: which model to ask, when the worker offers a choice

    def dump(self) -> dict[str, Any]:
        """`{query, apiKey?, model?}`: keys left unset are left out."""
        return self.model_dump(mode="json", exclude_none=True)


class QueryAck(Payload):
    """The acknowledgement of a `user-query` (extension): `{taskId, position}` when the question was
    accepted (`position` 0: a worker took it at once), `{error}` when it was not."""

    kind: ClassVar[str] = "user-query acknowledgement"
    taskId: str | None = None
    position: Count | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _one_of_both(self) -> QueryAck:
        if self.error is None and (self.taskId is None or self.position is None):
            raise ValueError("expected {taskId, position} or {error}")
        return self

    @classmethod
    def accept(cls, task_id: str, position: int) -> QueryAck:
        """The question is task `task_id`, `position`-th in the queue (0: assigned at once)."""
        return cls(taskId=task_id, position=position)

    @classmethod
    def refuse(cls, error: str) -> QueryAck:
        """The question was not accepted, for the reason `error` (fit for the user)."""
        return cls(error=error)

    @property
    def accepted(self) -> bool:
        """Whether the question became a task."""
        return self.error is None

    def dump(self) -> dict[str, Any]:
        """`{taskId, position}` or `{error}`: the keys of the other case are left out."""
        return self.model_dump(mode="json", exclude_none=True)


class TaskQueued(Payload):
    """`task-queued` (master -> client): the question waits, `position`-th in the queue."""

    kind: ClassVar[str] = "task-queued"
    taskId: str = ""  # extension
    position: Count


class TaskAssigned(Payload):
    """`task-assigned` (extension, master -> client): a worker took the question."""

    kind: ClassVar[str] = "task-assigned"
    taskId: str
    workerId: str


class AiResponse(Payload):
    """`ai-response` (master -> client): the answer, or on failure `error` with the same text in
    `response` (so a baseline client that shows only `response` still tells its user)."""

    kind: ClassVar[str] = "ai-response"
    taskId: str = ""  # extension
    query: str
    response: str
    workerId: str
    processingTime: int
    timestamp: int
    queryTimestamp: int = 0  # extension
    model: str = ""  # extension
    error: str = ""  # extension: non-empty when the question failed

    @property
    def failed(self) -> bool:
        """Whether this says the question failed."""
        return bool(self.error)


class SystemStatus(Payload):
    """`system-status` (extension, master -> every client, when it changes): the system at a glance."""

    kind: ClassVar[str] = "system-status"
    workers: Count  # online: idle + busy
    idle: Count
    busy: Count
    queued: Count


class DashboardWorker(Message):
    """One worker in a `dashboard` snapshot: its state, its current task and how long that has run, its counts."""

    kind: ClassVar[str] = "dashboard worker"
    workerId: str
    language: str
    state: WorkerStateName
    taskId: str | None = None  # the task it holds, null when none
    taskMs: Count | None = None  # how long it has held that task (the master's clock), null when none
    tasksDone: Count = 0
    tasksFailed: Count = 0
    lastSeen: Count = 0  # when the master last heard from it (ms since the epoch)


class AnswerSeries(Message):
    """Answers per second over the last few minutes, oldest second first: how many were delivered in each
    second, and the p50 and p95 of their latency (question accepted to answer delivered, ms; null in a
    second without answers). The three lists have the same length; second `i` starts at `start + i * stepMs`."""

    kind: ClassVar[str] = "answer series"
    start: Count = 0  # ms since the epoch
    stepMs: Count = 1000
    answers: list[Count] = Field(default_factory=list)
    p50: list[Count | None] = Field(default_factory=list)
    p95: list[Count | None] = Field(default_factory=list)


class AnswerSummary(Message):
    """The answers delivered over the last `seconds` complete seconds: how many, and their latency's p50 and p95
    (ms, null without answers)."""

    kind: ClassVar[str] = "answer summary"
    seconds: Count = 60
    answers: Count = 0
    p50: Count | None = None
    p95: Count | None = None


class DashboardSnapshot(Payload):
    """`dashboard` (extension, master -> dashboard clients, about once a second): the workers, the queue and
    the recent answers. Timings and counts only: no question, answer, session id or key."""

    kind: ClassVar[str] = "dashboard"
    timestamp: Count  # the master's clock when it was taken (ms); `lastSeen` and `series` are on it
    workers: list[DashboardWorker]
    idle: Count
    busy: Count
    offline: Count
    lost: Count
    queued: Count  # questions waiting for a worker
    inFlight: Count  # questions assigned to a worker and not answered yet
    series: AnswerSeries
    lastMinute: AnswerSummary
