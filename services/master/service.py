"""The master's behaviour: turns wire events into dispatcher calls and the outcomes into sends."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from services.master.dispatch import Dispatcher, Outcome, ResultClaim, Task
from services.master.metrics import Metrics
from services.master.registry import WorkerState
from services.master.settings import MasterSettings
from services.protocol import (
    DecodeError,
    Events,
    LogMessage,
    RegisterMessage,
    ResultSummary,
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


class Publisher(Protocol):
    """Sends MQTT messages without blocking the caller."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


Emit = Callable[[str, dict[str, Any], str], Awaitable[None]]  # (event, data, session_id)
Broadcast = Callable[[str, dict[str, Any]], Awaitable[None]]  # (event, data) to every client


class Master:
    """Owns the dispatcher; every handler runs on the event loop, so no locks are needed."""

    def __init__(
        self, settings: MasterSettings, publisher: Publisher, emit: Emit, clock: Callable[[], int] = now_ms
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.dispatcher = Dispatcher(max_attempts=settings.max_attempts, allow_baseline=settings.allow_baseline_workers)
        self.metrics = Metrics(self._state_counts)
        self._publisher = publisher
        self._emit = emit
        self._clock = clock
        self._sent_positions: dict[str, int] = {}
        self._positions_dirty = asyncio.Event()

    # -- users ------------------------------------------------------------------------------
    async def submit(self, session_id: str, payload: object) -> dict[str, Any]:
        """Accept a user's question or say clearly why not; the return value is the Socket.IO ack."""
        try:
            query = validate(UserQuery, payload)
        except DecodeError as e:
            self.metrics.tasks.labels("rejected").inc()
            return {"error": f"{e.reason}; send {{query: string, apiKey?: string}}"}
        text = query.query.strip()
        if not text:
            self.metrics.tasks.labels("rejected").inc()
            return {"error": "the question is empty"}
        if len(text) > self.settings.max_query_chars:
            self.metrics.tasks.labels("rejected").inc()
            return {
                "error": f"the question is too long: {len(text)} characters, at most {self.settings.max_query_chars}"
            }
        now = self._clock()
        task = Task(
            task_id=str(uuid.uuid4()),
            session_id=session_id,
            query=text,
            submitted_ms=now,
            api_key=(query.apiKey or "").strip(),
            model=query.model or None,
        )
        position, outcome = self.dispatcher.submit(task, now)
        self.metrics.tasks.labels("accepted").inc()
        if position:
            self._sent_positions[task.task_id] = position
            await self._emit(Events.TASK_QUEUED, {"taskId": task.task_id, "position": position}, session_id)
        await self._apply(outcome)
        return {"taskId": task.task_id, "position": position}

    # -- workers over MQTT ------------------------------------------------------------------
    async def on_mqtt(self, topic: str, payload: bytes) -> None:
        """Handle one message from a topic the master subscribes to."""
        now = self._clock()
        try:
            if topic == self.topics.register:
                reg = decode(RegisterMessage, payload)
                known = self.dispatcher.registry.get(reg.worker_id)
                outcome = self.dispatcher.worker_online(reg.worker_id, reg.language, now)
                if known is None or known.state is WorkerState.OFFLINE:
                    self.log(f"worker {reg.worker_id} ({reg.language}) registered")
            elif topic == self.topics.status:
                status = decode(StatusMessage, payload)
                worker = self.dispatcher.registry.get(status.worker_id)
                lost_task = worker.task_id if worker and status.status == "offline" else None
                outcome = self.dispatcher.worker_status(status.worker_id, status.status, now)
                if status.status == "offline" and worker is not None:
                    requeued = lost_task is not None and self.dispatcher.task(lost_task) is not None
                    self.log(
                        f"worker {status.worker_id} went offline"
                        + (f"; task {lost_task[:8]} requeued" if requeued and lost_task else "")
                    )
                    if requeued:
                        self.metrics.tasks.labels("requeued").inc()
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
        await self._deliver(task, result, now)
        await self._apply(verdict.outcome)
        return True, verdict.message

    async def _deliver(self, task: Task, result: pb.TaskResult, now: int) -> None:
        """Send the answer (or the readable error) to the task's session, then record it."""
        worker = self.dispatcher.registry.get(task.worker_id or "")
        text = result.error or result.ai_response
        await self._emit(
            Events.AI_RESPONSE,
            {
                "taskId": task.task_id,
                "query": task.query,
                "response": text,
                "workerId": result.worker_id,
                "processingTime": result.processing_time_ms,
                "timestamp": result.completion_timestamp or now,
                "queryTimestamp": task.submitted_ms,
                "model": result.model,
                "error": result.error,
            },
            task.session_id,
        )
        delivered = self._clock()
        outcome: Literal["answered", "failed"] = "failed" if result.error else "answered"
        self.metrics.tasks.labels(outcome).inc()
        self.metrics.latency.observe((delivered - task.submitted_ms) / 1000)
        self.metrics.wait.observe((task.assigned_ms - task.submitted_ms) / 1000)
        self.metrics.processing.observe(result.processing_time_ms / 1000)
        self.metrics.overhead.observe(max(0, delivered - task.submitted_ms - result.processing_time_ms) / 1000)
        summary = ResultSummary(
            task_id=task.task_id,
            worker_id=result.worker_id,
            language=worker.language if worker else "",
            attempt=task.attempt,
            outcome=outcome,
            error=result.error[:500],
            model=result.model,
            query_timestamp=task.submitted_ms,
            assigned_timestamp=task.assigned_ms,
            started_timestamp=max(0, result.started_timestamp),
            completion_timestamp=max(0, result.completion_timestamp),
            received_timestamp=now,
            processing_time_ms=result.processing_time_ms,
            model_time_ms=result.model_time_ms,
        )
        self._publisher.publish(self.topics.results, encode(summary), qos=0)
        self.log(
            f"task {task.task_id[:8]} {outcome} by {result.worker_id} "
            f"in {result.processing_time_ms} ms (attempt {task.attempt})"
        )

    # -- shared -----------------------------------------------------------------------------
    async def _apply(self, outcome: Outcome) -> None:
        """Publish assignments and tell users about them; deliver definitive failures."""
        for a in outcome.assignments:
            t = a.task
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
            self._publisher.publish(self.topics.tasks(a.worker_id), encode(message), qos=1)
            self._sent_positions.pop(t.task_id, None)
            await self._emit(Events.TASK_ASSIGNED, {"taskId": t.task_id, "workerId": a.worker_id}, t.session_id)
        for f in outcome.failures:
            self.metrics.tasks.labels("failed").inc()
            self._sent_positions.pop(f.task.task_id, None)
            await self._emit(
                Events.AI_RESPONSE,
                {
                    "taskId": f.task.task_id,
                    "query": f.task.query,
                    "response": f.message,
                    "workerId": "",
                    "processingTime": 0,
                    "timestamp": self._clock(),
                    "queryTimestamp": f.task.submitted_ms,
                    "model": "",
                    "error": f.message,
                },
                f.task.session_id,
            )
            self.log(f"task {f.task.task_id[:8]} failed: {f.message}")
        if outcome.assignments and self._sent_positions:
            self._positions_dirty.set()

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
        queued, _, counts = self._state_counts()
        return {
            "workers": counts["idle"] + counts["busy"],
            "idle": counts["idle"],
            "busy": counts["busy"],
            "queued": queued,
        }

    def log(self, message: str) -> None:
        """Log locally and on the shared log topic (callers never pass keys or session ids)."""
        log.info("%s", message)
        line = LogMessage(timestamp=self._clock(), source="master", message=message)
        self._publisher.publish(self.topics.logs, encode(line), qos=0)

    def status(self) -> dict[str, Any]:
        """The REST status: workers with state and counts, and the queue."""
        workers = [
            {
                "worker_id": w.worker_id,
                "language": w.language,
                "state": w.state.value,
                "tasks_done": w.tasks_done,
                "tasks_failed": w.tasks_failed,
                "current_task": w.task_id,
                "last_seen": w.last_seen_ms,
            }
            for w in self.dispatcher.registry
        ]
        _, _, counts = self._state_counts()
        return {
            "workers": workers,
            **counts,
            "queue_length": self.dispatcher.queue_length,
            "in_flight": self.dispatcher.in_flight,
        }

    def _state_counts(self) -> tuple[int, int, dict[str, int]]:
        reg = self.dispatcher.registry
        counts = {s.value: reg.count(s) for s in WorkerState}
        return self.dispatcher.queue_length, self.dispatcher.in_flight, counts


def new_session_id() -> str:
    """An unguessable session id (a bearer secret: never published, never logged)."""
    return secrets.token_urlsafe(24)
