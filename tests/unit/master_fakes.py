"""Stand-ins for the master's edges in unit tests: a recording publisher and sender, a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.master.journal import Journal
from services.master.results import WorkerResult
from services.master.service import Master
from services.master.settings import MasterSettings
from services.protocol import (
    AiResponse,
    Events,
    Payload,
    RegisterMessage,
    StatusMessage,
    TaskAssigned,
    TaskMessage,
    TaskQueued,
    Topics,
    UserQuery,
    decode,
)

P = TypeVar("P", bound=Payload)
TOPICS = Topics()
START_MS = 1_700_000_000_000
SESSION = "session-aaaaaaaaaaaaaaaa"
OTHER_SESSION = "session-bbbbbbbbbbbbbbbb"


class Clock:
    """Milliseconds that move only when a test says so."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclass
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    on_failure: Callable[[], None] | None


class RecordingPublisher:
    """Keeps every publish; with `failing` set, reports each failure soon after, as the MQTT link does."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.cleared: list[str] = []  # client ids whose broker session the master discarded
        self.failing = False

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.published.append(Published(topic, payload, qos, retain, on_failure))
        if self.failing and on_failure is not None:
            asyncio.get_running_loop().call_soon(on_failure)

    def clear_session(self, client_id: str) -> None:
        self.cleared.append(client_id)

    def tasks(self, worker_id: str | None = None) -> list[TaskMessage]:
        """The task messages published so far (to `worker_id`, or to anyone)."""
        return [
            decode(TaskMessage, p.payload)
            for p in self.published
            if TOPICS.worker_id_from_tasks(p.topic) is not None
            and (worker_id is None or TOPICS.worker_id_from_tasks(p.topic) == worker_id)
        ]

    def on(self, topic: str) -> list[Published]:
        """What was published on `topic`."""
        return [p for p in self.published if p.topic == topic]


@dataclass
class Sent:
    event: str
    payload: Payload
    session_id: str
    on_ack: Callable[[], None] | None = field(repr=False)


class RecordingSender:
    """The Socket.IO side: keeps every send; `ack` plays a client acknowledging an answer."""

    def __init__(self, connections: int = 1) -> None:
        self.sent: list[Sent] = []
        self.connections = connections
        self.on_send: Callable[[Sent], None] = lambda sent: None

    async def __call__(
        self, event: str, payload: Payload, session_id: str, on_ack: Callable[[], None] | None = None
    ) -> int:
        sent = Sent(event, payload, session_id, on_ack)
        self.sent.append(sent)
        self.on_send(sent)
        return self.connections

    def of(self, event: str, kind: type[P], session_id: str | None = None) -> list[P]:
        """The payloads of `event` sent so far (to `session_id`, or to anyone)."""
        found = [s.payload for s in self.sent if s.event == event and session_id in (None, s.session_id)]
        assert all(isinstance(p, kind) for p in found)
        return [p for p in found if isinstance(p, kind)]

    def answers(self, session_id: str | None = None) -> list[AiResponse]:
        return self.of(Events.AI_RESPONSE, AiResponse, session_id)

    def queued(self, session_id: str | None = None) -> list[TaskQueued]:
        return self.of(Events.TASK_QUEUED, TaskQueued, session_id)

    def assigned(self, session_id: str | None = None) -> list[TaskAssigned]:
        return self.of(Events.TASK_ASSIGNED, TaskAssigned, session_id)

    def ack(self, task_id: str) -> None:
        """A client acknowledges the last `ai-response` of `task_id`."""
        sent = [s for s in self.sent if s.event == Events.AI_RESPONSE and getattr(s.payload, "taskId", "") == task_id]
        assert sent and sent[-1].on_ack is not None, f"no acknowledgeable answer for {task_id}"
        sent[-1].on_ack()


@dataclass
class Rig:
    """A master with recording edges, a fake clock and an in-memory journal."""

    master: Master
    publisher: RecordingPublisher
    sender: RecordingSender
    clock: Clock
    journal: Journal

    async def ask(self, text: str = "What is MQTT?", session_id: str = SESSION, acks: bool = True) -> str:
        """Submit a question that must be accepted; returns its task id. `acks`: the client asked for the
        `user-query` acknowledgement (as the chat page does), so its session acknowledges answers."""
        if acks:
            self.master.deliveries.expects_acks(session_id)
        ack = await self.master.submit(session_id, UserQuery(query=text))
        assert ack.accepted and ack.taskId, ack
        return ack.taskId

    async def worker(self, worker_id: str, max_task_ms: int | None = None) -> None:
        """A worker registers (idle)."""
        reg = RegisterMessage(worker_id=worker_id, language="go", timestamp=self.clock(), max_task_ms=max_task_ms)
        await self.master.on_register(reg)

    async def status(self, worker_id: str, status: str, task: TaskMessage | None = None) -> None:
        message = StatusMessage.model_validate(
            {
                "worker_id": worker_id,
                "status": status,
                "timestamp": self.clock(),
                "task_id": task.task_id if task else None,
                "attempt": task.attempt if task else None,
            }
        )
        await self.master.on_status(message)

    async def answer(self, task: TaskMessage, text: str = "42", **changes: Any) -> tuple[bool, str]:
        """The worker `task` went to sends its result (with `changes` to the result's fields)."""
        result = WorkerResult(
            worker_id=task.worker_id,
            task_id=task.task_id or "",
            attempt=task.attempt or 0,
            token=task.token or "",
            response=text,
            model="offline",
            processing_time_ms=7,
            started_ms=self.clock() - 7,
            completed_ms=self.clock(),
        )
        return await self.master.on_result(dataclasses.replace(result, **changes))

    def last_task(self, worker_id: str | None = None) -> TaskMessage:
        tasks = self.publisher.tasks(worker_id)
        assert tasks, f"no task message published to {worker_id or 'anyone'}"
        return tasks[-1]


def rig(journal: Journal | None = None, clock: Clock | None = None, **settings: Any) -> Rig:
    """A master over `journal` (a new in-memory one by default), not connected to MQTT yet."""
    clock = clock or Clock()
    journal = journal or Journal(":memory:")
    publisher, sender = RecordingPublisher(), RecordingSender()
    master = Master(MasterSettings(**settings), publisher, sender, journal, clock)
    return Rig(master, publisher, sender, clock, journal)


async def started(journal: Journal | None = None, clock: Clock | None = None, **settings: Any) -> Rig:
    """A master that restored its journal and is connected to MQTT."""
    r = rig(journal, clock, **settings)
    r.master.restore()
    await r.master.mqtt_up()
    return r


async def settle() -> None:
    """Let callbacks and tasks scheduled on the loop run (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)
