"""Answers on their way to users: sent, kept until the user's client acknowledges them, sent again
when the session comes back, dropped after the retention time.

Only sessions known to acknowledge get that: a session is known to once one of its clients asked for
the `user-query` acknowledgement or acknowledged an `ai-response`. A baseline client does neither
and never acknowledges an answer: its answers are dropped as soon as they went to a connected client
instead of being kept for an acknowledgement that never comes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from services.master.journal_records import PendingAnswer, TaskJournal
from services.protocol import AiResponse, Events, Payload

log = logging.getLogger(__name__)

# (event, data, session_id, on_ack): send to every connection of the session; on_ack runs when
# one of them acknowledges.
SendWithAck = Callable[[str, Payload, str, Callable[[], None] | None], Awaitable[int]]


class Deliveries:
    """Undelivered answers by session, mirrored in the journal."""

    def __init__(
        self,
        journal: TaskJournal,
        send: SendWithAck,
        clock: Callable[[], int],
        retention_ms: int,
        on_delivered: Callable[[str], None] = lambda task_id: None,
    ) -> None:
        self._on_delivered = on_delivered
        self._journal = journal
        self._send = send
        self._clock = clock
        self._retention_ms = retention_ms
        self._pending: dict[str, dict[str, PendingAnswer]] = {}
        self._acking: dict[str, int] = {}  # sessions known to acknowledge -> when last seen doing so

    def __len__(self) -> int:
        return sum(len(answers) for answers in self._pending.values())

    def restore(self, answers: list[PendingAnswer]) -> None:
        """Take back the undelivered answers of a previous run."""
        for answer in answers:
            self._pending.setdefault(answer.session_id, {})[answer.task_id] = answer

    def has(self, session_id: str) -> bool:
        """Whether answers wait for this session."""
        return session_id in self._pending

    def expects_acks(self, session_id: str) -> None:
        """A client of this session acknowledges (it asked for the `user-query` acknowledgement)."""
        self._acking[session_id] = self._clock()

    def acknowledges(self, session_id: str) -> bool:
        """Whether this session is known to acknowledge its answers."""
        return session_id in self._acking

    async def deliver(self, task_id: str, session_id: str, payload: AiResponse) -> None:
        """Send an answer now and keep it until acknowledged (the journal already has it). A session
        not known to acknowledge keeps it only while none of its clients is connected."""
        answer = PendingAnswer(task_id, session_id, payload, self._clock())
        self._pending.setdefault(session_id, {})[task_id] = answer
        sent = await self._send_one(answer)
        if sent and session_id not in self._acking:
            self._forget(task_id, session_id)

    def acknowledged(self, task_id: str, session_id: str) -> None:
        """The user's client has the answer: forget it here and in the journal."""
        self._acking[session_id] = self._clock()
        self._forget(task_id, session_id)

    async def resume(self, session_id: str) -> int:
        """A session (re)connected: send what waits for it again; returns how many."""
        answers = list(self._pending.get(session_id, {}).values())
        for answer in answers:
            await self._send_one(answer)
        return len(answers)

    def _forget(self, task_id: str, session_id: str) -> None:
        answers = self._pending.get(session_id)
        if answers is None or answers.pop(task_id, None) is None:
            return  # a second acknowledgement (two tabs of one session)
        if not answers:
            del self._pending[session_id]
        self._journal.delivered(task_id, self._clock())
        self._on_delivered(task_id)

    def purge(self) -> int:
        """Drop answers older than the retention time; returns how many."""
        cutoff = self._clock() - self._retention_ms
        dropped = 0
        for session_id in list(self._pending):
            answers = self._pending[session_id]
            for task_id in [t for t, a in answers.items() if a.finished_ms < cutoff]:
                del answers[task_id]
                dropped += 1
            if not answers:
                del self._pending[session_id]
        self._journal.purge(cutoff)
        for session_id in [s for s, seen in self._acking.items() if seen < cutoff and s not in self._pending]:
            del self._acking[session_id]
        return dropped

    async def _send_one(self, answer: PendingAnswer) -> int:
        def acked() -> None:
            self.acknowledged(answer.task_id, answer.session_id)

        return await self._send(Events.AI_RESPONSE, answer.payload, answer.session_id, acked)
