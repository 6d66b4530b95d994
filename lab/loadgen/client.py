"""A Socket.IO chat client for tests, load generators and notebooks."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from services.protocol import AiResponse, DecodeError, Events, QueryAck, TaskAssigned, TaskQueued, UserQuery, validate

# What the master says about a task, by event (the client reads each event once, into its model).
TaskEvent = TaskQueued | TaskAssigned | AiResponse
TASK_EVENTS: dict[str, type[TaskEvent]] = {
    Events.TASK_QUEUED: TaskQueued,
    Events.TASK_ASSIGNED: TaskAssigned,
    Events.AI_RESPONSE: AiResponse,
}
NOT_ACKNOWLEDGED = QueryAck.refuse("not acknowledged")


@dataclass
class Exchange:
    """One question and everything the master said about it."""

    query: str
    sent_at: float
    task_id: str = ""
    ack: QueryAck = NOT_ACKNOWLEDGED  # the master's acknowledgement, once it came

    positions: list[int] = field(default_factory=list)
    worker_id: str = ""
    assignments: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), worker id)
    answers: list[AiResponse] = field(default_factory=list)
    answered_at: float | None = None

    def note_position(self, position: int) -> None:
        """Record a queue position unless it repeats the last one (ack and event both carry it)."""
        if not self.positions or self.positions[-1] != position:
            self.positions.append(position)

    @property
    def answer(self) -> AiResponse | None:
        """The first answer (there should be exactly one)."""
        return self.answers[0] if self.answers else None


class ChatClient:
    """One user: a Socket.IO connection that asks questions and matches answers by task id."""

    def __init__(self, url: str, session_id: str | None = None) -> None:
        self.url = url
        self.session_id = session_id
        import socketio  # here, not at the top: the `lab` command's parser must not load it

        # As the chat page: back within 2 s of the master's return (the default backoff grows to 5 s).
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay_max=2)
        self.exchanges: dict[str, Exchange] = {}
        # Events for tasks this client has not asked about (yet): they came before the ack, or they
        # belong to questions this session asked over an earlier connection.
        self.unclaimed: dict[str, list[tuple[str, TaskEvent, float]]] = defaultdict(list)
        self.answered_count = 0  # exchanges with at least one answer (waiting must not rescan them all)
        self._changed = asyncio.Event()
        self._session = asyncio.Event()
        self.sio.on(Events.SESSION_ID, self._on_session)
        for event in TASK_EVENTS:
            self.sio.on(event, self._handler(event))

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect (over WebSocket) and wait for the session id."""
        # A callable: every reconnection offers the session id we have by then.
        await self.sio.connect(self.url, transports=["websocket"], auth=self._auth, wait_timeout=timeout)
        await asyncio.wait_for(self._session.wait(), timeout)

    def _auth(self) -> dict[str, str]:
        return {"sessionId": self.session_id} if self.session_id else {}

    async def close(self) -> None:
        """Disconnect."""
        await self.sio.disconnect()

    async def ask(self, query: str, api_key: str | None = None, timeout: float = 10.0) -> Exchange:
        """Send one question and return it once acknowledged."""
        payload = UserQuery(query=query, apiKey=api_key or None).dump()
        return await self.send_raw(payload, timeout, query=query)

    async def send_raw(self, payload: object, timeout: float = 10.0, query: str | None = None) -> Exchange:
        """Send any `user-query` payload (tests of bad input use this) and return it once acknowledged."""
        exchange = Exchange(query=str(payload) if query is None else query, sent_at=time.monotonic())
        ack = await self.sio.call(Events.USER_QUERY, payload, timeout=timeout)
        try:
            exchange.ack = validate(QueryAck, ack)
        except DecodeError:
            exchange.ack = QueryAck.refuse(f"unexpected ack {ack!r}")
        exchange.task_id = exchange.ack.taskId or ""
        if exchange.task_id:
            self.exchanges[exchange.task_id] = exchange
            if exchange.ack.position:
                exchange.note_position(exchange.ack.position)
            for event, message, at in self.unclaimed.pop(exchange.task_id, []):
                self._claim(exchange, event, message, at)
        return exchange

    def answered(self) -> list[Exchange]:
        """Exchanges that got at least one answer."""
        return [e for e in self.exchanges.values() if e.answers]

    async def wait_answers(self, count: int, timeout: float) -> list[Exchange]:
        """Wait until `count` questions are answered; raise TimeoutError naming how many are missing."""
        deadline = time.monotonic() + timeout
        while self.answered_count < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.answered_count} of {count} answers after {timeout} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                continue
        return self.answered()

    async def _on_session(self, session_id: str) -> None:
        self.session_id = session_id
        self._session.set()

    def _handler(self, event: str) -> Any:
        model = TASK_EVENTS[event]

        async def handle(data: Any) -> bool:
            # The return value acknowledges the event: the master keeps an answer until then.
            try:
                message = validate(model, data)
            except DecodeError:
                return True  # not what the event carries: nothing to record
            self._received(event, message)
            return True

        return handle

    def _received(self, event: str, message: TaskEvent) -> None:
        """Record one task event, read (subclasses hear of it here, after it is recorded)."""
        exchange = self.exchanges.get(message.taskId)
        at = time.monotonic()
        if exchange is None:
            self.unclaimed[message.taskId].append((event, message, at))  # arrived before the ack
        else:
            self._claim(exchange, event, message, at)
        self._changed.set()

    def _claim(self, exchange: Exchange, event: str, message: TaskEvent, at: float) -> None:
        first_answer = isinstance(message, AiResponse) and not exchange.answers
        self._apply(exchange, message, at)
        self.answered_count += first_answer

    @staticmethod
    def _apply(exchange: Exchange, message: TaskEvent, at: float) -> None:
        if isinstance(message, TaskQueued):
            exchange.note_position(message.position)
        elif isinstance(message, TaskAssigned):
            exchange.worker_id = message.workerId
            exchange.assignments.append((at, exchange.worker_id))
        else:
            exchange.answers.append(message)
            exchange.answered_at = exchange.answered_at or at
