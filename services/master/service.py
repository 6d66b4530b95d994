"""The master's behaviour: turns wire events into dispatcher calls and the outcomes into sends."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from services.master.delivery import Deliveries, SendWithAck
from services.master.dispatch import Dispatcher, Outcome, ResultClaim, Task, TaskState
from services.master.journal import Journal
from services.master.limits import RateLimiter
from services.master.metrics import Metrics
from services.master.registry import WorkerState
from services.master.settings import MasterSettings
from services.master.views import (
    answer_payload,
    failure_payload,
    result_summary,
    state_counts,
    status_report,
    status_summary,
)
from services.master.watch import EventHub
from services.protocol import (
    DecodeError,
    Events,
    LogMessage,
    RegisterMessage,
    StatusMessage,
    TaskMessage,
    Topics,
    decode,
    encode,
    now_ms,
)
from services.protocol.messages import UserQuery, validate
from services.protocol.rpc import pb

log = logging.getLogger(__name__)

# How often queued users are told their new position, and everyone the system's state, at most.
POSITION_INTERVAL_S = 0.25
STATUS_INTERVAL_S = 1.0
# How often leases are checked and old undelivered answers dropped.
LEASE_CHECK_S = 0.5
PURGE_EVERY_S = 60.0


class Publisher(Protocol):
    """Sends MQTT messages without blocking the caller."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_failure: Callable[[], None] | None = None,
    ) -> None: ...


Broadcast = Callable[[str, dict[str, Any]], Awaitable[None]]  # (event, data) to every client


class Master:
    """Owns the dispatcher; every handler runs on the event loop, so no locks are needed."""

    def __init__(
        self,
        settings: MasterSettings,
        publisher: Publisher,
        send: SendWithAck,
        journal: Journal,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.dispatcher = Dispatcher(
            max_attempts=settings.max_attempts,
            allow_baseline=settings.allow_baseline_workers,
            lease_ms=round(settings.lease_seconds * 1000),
        )
        self.dispatcher.hold(True, clock())  # nothing is assigned before MQTT is up
        self.metrics = Metrics(lambda: state_counts(self.dispatcher))
        self.journal = journal
        self.events = EventHub()
        self.deliveries = Deliveries(
            journal, send, clock, round(settings.answer_retention_seconds * 1000), on_delivered=self._delivered
        )
        self.rates = RateLimiter(settings.rate_per_minute)
        self._publisher = publisher
        self._send = send
        self._clock = clock
        self._sent_positions: dict[str, int] = {}
        self._positions_dirty = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    def restore(self) -> None:
        """Take back what the journal holds from a previous run: open tasks and undelivered answers."""
        tasks = self.journal.open_tasks()
        answers = self.journal.pending_answers()
        self.dispatcher.restore(tasks, self._clock())
        self.deliveries.restore(answers)
        if tasks or answers:
            self.log(f"restored {len(tasks)} open tasks and {len(answers)} undelivered answers from the journal")

    # -- users ------------------------------------------------------------------------------
    async def submit(self, session_id: str, payload: object) -> dict[str, Any]:
        """Accept a user's question or say clearly why not; the return value is the Socket.IO ack."""
        error, task = self._admit(session_id, payload)
        if task is None:
            self.metrics.tasks.labels("rejected").inc()
            return {"error": error}
        self.journal.accepted(task)  # before the user hears it was accepted
        position, outcome = self.dispatcher.submit(task, task.submitted_ms)
        self.metrics.tasks.labels("accepted").inc()
        self._event("task.accepted", task, position=position)
        if position:
            self._sent_positions[task.task_id] = position
            await self._emit(Events.TASK_QUEUED, {"taskId": task.task_id, "position": position}, session_id)
        await self._apply(outcome)
        return {"taskId": task.task_id, "position": position}

    def _admit(self, session_id: str, payload: object) -> tuple[str, Task | None]:
        try:
            query = validate(UserQuery, payload)
        except DecodeError as e:
            return f"{e.reason}; send {{query: string, apiKey?: string}}", None
        text = query.query.strip()
        limit = self.settings.max_query_chars
        if not text:
            return "the question is empty", None
        if len(text) > limit:
            return f"the question is too long: {len(text)} characters, at most {limit}", None
        if self.dispatcher.unfinished(session_id) >= self.settings.max_in_flight_per_session:
            n = self.settings.max_in_flight_per_session
            return f"too many questions in flight: at most {n} at once; wait for an answer", None
        now = self._clock()
        wait_ms = self.rates.allow(session_id, now)
        if wait_ms:
            n = self.settings.rate_per_minute
            return f"too many questions: at most {n} per minute; try again in {math.ceil(wait_ms / 1000)} s", None
        task = Task(
            task_id=str(uuid.uuid4()),
            session_id=session_id,
            query=text,
            submitted_ms=now,
            api_key=(query.apiKey or "").strip(),
            model=query.model or None,
        )
        return "", task

    async def session_connected(self, session_id: str) -> None:
        """A client joined a session: tell it where its open questions are and resend its answers."""
        if self.dispatcher.unfinished(session_id):
            for task in self.dispatcher.open_tasks():
                if task.session_id != session_id:
                    continue
                if task.state is TaskState.ASSIGNED:
                    await self._emit(
                        Events.TASK_ASSIGNED, {"taskId": task.task_id, "workerId": task.worker_id}, session_id
                    )
                else:
                    self._sent_positions.pop(task.task_id, None)
                    self._positions_dirty.set()
        if self.deliveries.has(session_id):
            await self.deliveries.resume(session_id)

    # -- workers over MQTT ------------------------------------------------------------------
    async def mqtt_up(self) -> None:
        """The broker is reachable: assignments may flow."""
        await self._apply(self.dispatcher.hold(False, self._clock()))

    def mqtt_down(self) -> None:
        """The broker is gone: hold assignments until it is back."""
        self.dispatcher.hold(True, self._clock())

    async def on_mqtt(self, topic: str, payload: bytes) -> None:
        """Handle one message from a topic the master subscribes to."""
        now = self._clock()
        try:
            if topic == self.topics.register:
                reg = decode(RegisterMessage, payload)
                known = self.dispatcher.registry.get(reg.worker_id)
                outcome = self.dispatcher.worker_online(reg.worker_id, reg.language, now, reg.max_task_ms)
                if known is None or known.state is WorkerState.OFFLINE:
                    self.log(f"worker {reg.worker_id} ({reg.language}) registered")
                    self._event("worker.online", worker_id=reg.worker_id, language=reg.language)
            elif topic == self.topics.status:
                status = decode(StatusMessage, payload)
                worker = self.dispatcher.registry.get(status.worker_id)
                was_online = worker is not None and worker.state is not WorkerState.OFFLINE
                outcome = self.dispatcher.worker_status(
                    status.worker_id, status.status, now, status.task_id, status.attempt
                )
                if status.status == "offline" and was_online:
                    self.log(f"worker {status.worker_id} went offline")
                self._event(f"worker.{status.status}", worker_id=status.worker_id, task_id=status.task_id or "")
            else:
                return
        except DecodeError as e:
            self.metrics.bad_messages.labels("mqtt").inc()
            log.warning("ignored a bad message on %s: %s", topic, e)
            return
        await self._apply(outcome)

    # -- results over gRPC ------------------------------------------------------------------
    async def on_result(self, result: pb.TaskResult) -> tuple[bool, str]:
        """Accept or refuse a worker's result; an accepted one goes to its user at once."""
        now = self._clock()
        claim = ResultClaim(result.worker_id, result.task_id, result.attempt, result.token)
        verdict = self.dispatcher.result(claim, now)
        if not verdict.accepted or verdict.task is None:
            self.metrics.results.labels("refused").inc()
            self.log(f"result from {result.worker_id[:64]} {verdict.message}")
            return False, verdict.message
        self.metrics.results.labels("accepted").inc()
        task = verdict.task
        failed = bool(result.error)
        self.dispatcher.finish(task, failed)
        payload = answer_payload(task, result, now)
        self._event(
            "task.failed" if failed else "task.answered",
            task,
            worker_id=result.worker_id,
            processing_time_ms=result.processing_time_ms,
            started_timestamp=max(0, result.started_timestamp),
            completion_timestamp=max(0, result.completion_timestamp),
            reason=result.error[:200],
        )
        self.journal.finished(task, payload, failed, now)  # before the worker hears it was accepted
        # The worker's next task first, then the answer: sending the answer awaits the user's socket, and
        # the worker (idle now) should not wait for it (the scale benchmark's handover, p50 -3 ms).
        await self._apply(verdict.outcome)
        await self.deliveries.deliver(task.task_id, task.session_id, payload)
        self._record(task, result, now)
        return True, verdict.message

    def _record(self, task: Task, result: pb.TaskResult, now: int) -> None:
        """Metrics, the results topic and the log line of a finished task."""
        worker = self.dispatcher.registry.get(task.worker_id or "")
        delivered = self._clock()
        summary = result_summary(task, result, worker.language if worker else "", now)
        self.metrics.tasks.labels(summary.outcome).inc()
        self.metrics.latency.observe((delivered - task.submitted_ms) / 1000)
        self.metrics.wait.observe((task.assigned_ms - task.submitted_ms) / 1000)
        self.metrics.processing.observe(result.processing_time_ms / 1000)
        self.metrics.overhead.observe(max(0, delivered - task.submitted_ms - result.processing_time_ms) / 1000)
        self._publisher.publish(self.topics.results, encode(summary), qos=0)
        self.log(
            f"task {task.task_id[:8]} {summary.outcome} by {result.worker_id} "
            f"in {result.processing_time_ms} ms (attempt {task.attempt})"
        )

    # -- shared -----------------------------------------------------------------------------
    async def _apply(self, outcome: Outcome) -> None:
        """Record and publish assignments, requeues and definitive failures, and tell the users."""
        for r in outcome.requeued:
            self.journal.requeued(r.task)
            self.metrics.tasks.labels("requeued").inc()
            self._event("task.requeued", r.task, worker_id=r.worker_id, reason=r.reason)
            self.log(f"task {r.task.task_id[:8]} requeued: attempt {r.task.attempt} on {r.worker_id} lost ({r.reason})")
            self._sent_positions.pop(r.task.task_id, None)
            self._positions_dirty.set()
        for a in outcome.assignments:
            t = a.task
            self.journal.assigned(t)
            self._event("task.assigned", t, worker_id=a.worker_id)
            message = TaskMessage(
                worker_id=a.worker_id,
                session_id=t.task_id,
                query=t.query,
                api_key=t.api_key,
                grpc_endpoint=self.settings.advertised_grpc_endpoint,
                timestamp=t.submitted_ms,
                task_id=t.task_id,
                attempt=t.attempt,
                token=t.token,
                model=t.model,
            )
            lost = self._assignment_lost_callback(t.task_id, t.attempt)
            self._publisher.publish(self.topics.tasks(a.worker_id), encode(message), qos=1, on_failure=lost)
            self._sent_positions.pop(t.task_id, None)
            await self._emit(Events.TASK_ASSIGNED, {"taskId": t.task_id, "workerId": a.worker_id}, t.session_id)
        for f in outcome.failures:
            now = self._clock()
            payload = failure_payload(f.task, f.message, now)
            self.metrics.tasks.labels("failed").inc()
            self._event("task.failed", f.task, reason=f.message)
            self._sent_positions.pop(f.task.task_id, None)
            self.journal.finished(f.task, payload, True, now)
            await self.deliveries.deliver(f.task.task_id, f.task.session_id, payload)
            self.log(f"task {f.task.task_id[:8]} failed: {f.message}")
        if (outcome.assignments or outcome.requeued) and self._sent_positions:
            self._positions_dirty.set()

    def _event(self, kind: str, task: Task | None = None, **fields: Any) -> None:
        """Tell the watchers (if any) what happened, with the system's state after it."""
        if not self.events.active:
            return
        queued, _, counts = state_counts(self.dispatcher)
        if task is not None:
            fields.setdefault("task_id", task.task_id)
            fields.setdefault("attempt", task.attempt)
            fields.setdefault("query_timestamp", task.submitted_ms)
        self.events.publish(
            pb.Event(
                kind=kind,
                timestamp=self._clock(),
                queue_length=queued,
                busy_workers=counts["busy"],
                idle_workers=counts["idle"],
                **fields,
            )
        )

    def _delivered(self, task_id: str) -> None:
        self._event("task.delivered", task_id=task_id)

    def worker_snapshot(self) -> list[pb.Event]:
        """One event per known worker with its current state (the start of a watch)."""
        now = self._clock()
        return [
            pb.Event(
                kind=f"worker.{w.state.value}",
                timestamp=now,
                worker_id=w.worker_id,
                language=w.language,
                task_id=w.task_id or "",
            )
            for w in self.dispatcher.registry
        ]

    def _assignment_lost_callback(self, task_id: str, attempt: int) -> Callable[[], None]:
        def lost() -> None:
            outcome = self.dispatcher.assignment_lost(task_id, attempt, self._clock())
            self._spawn(self._apply(outcome))

        return lost

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _emit(self, event: str, data: dict[str, Any], session_id: str) -> None:
        await self._send(event, data, session_id, None)

    async def watch_leases(self) -> None:
        """Forever: take back tasks whose lease ran out; now and then drop old undelivered answers."""
        last_purge = self._clock()
        while True:
            await asyncio.sleep(LEASE_CHECK_S)
            now = self._clock()
            await self._apply(self.dispatcher.expire(now))
            if now - last_purge >= PURGE_EVERY_S * 1000:
                last_purge = now
                dropped = self.deliveries.purge()
                self.rates.forget_idle(now)
                if dropped:
                    self.log(f"dropped {dropped} answers nobody came back for")

    async def tell_positions(self) -> None:
        """Forever: tell queued users their new position when it changed (coalesced)."""
        while True:
            await self._positions_dirty.wait()
            self._positions_dirty.clear()
            for position, task in list(self.dispatcher.queued()):  # emits yield: the queue may move
                if self._sent_positions.get(task.task_id) != position:
                    self._sent_positions[task.task_id] = position
                    await self._emit(
                        Events.TASK_QUEUED, {"taskId": task.task_id, "position": position}, task.session_id
                    )
            await asyncio.sleep(POSITION_INTERVAL_S)

    async def tell_status(self, broadcast: Broadcast) -> None:
        """Forever: tell every client how many workers are online and busy and how long the queue is."""
        last: dict[str, int] = {}
        while True:
            summary = self.status_summary()
            if summary != last:
                await broadcast(Events.STATUS, summary)
                last = summary
            await asyncio.sleep(STATUS_INTERVAL_S)

    def status_summary(self) -> dict[str, int]:
        """Workers online, idle and busy, and the queue length: what the chat page shows."""
        return status_summary(self.dispatcher)

    def log(self, message: str) -> None:
        """Log locally and on the shared log topic (callers never pass keys or session ids)."""
        log.info("%s", message)
        line = LogMessage(timestamp=self._clock(), source="master", message=message)
        self._publisher.publish(self.topics.logs, encode(line), qos=0)

    def status(self) -> dict[str, Any]:
        """The REST status: workers with state and counts, and the queue."""
        return status_report(self.dispatcher, len(self.deliveries))


def new_session_id() -> str:
    """An unguessable session id (a bearer secret: never published, never logged)."""
    return secrets.token_urlsafe(24)
