"""The master's behaviour: domain events from the edges in, dispatcher decisions out as sends and publishes.

The edges (`app`, `mqtt_edge`, `grpc_edge`) translate the wire into the arguments of these methods;
the background loops (`loops`) call the steps `tick` and `send_positions` on a schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from services.master import broker_log
from services.master.delivery import Deliveries, SendWithAck
from services.master.dispatch import Dispatcher, Outcome, Task, TaskState
from services.master.intake import Intake, Refusal
from services.master.journal_records import JournalError, ResultNotRecorded, TaskJournal
from services.master.metrics import Metrics
from services.master.recent import RecentAnswers
from services.master.registry import Worker, WorkerState
from services.master.results import WorkerResult, answer, failure, summary, without_user_key
from services.master.scaling import decision_event, decision_line
from services.master.settings import MasterSettings
from services.master.views import LAST_MINUTE_S, dashboard_snapshot, state_counts, status_report, status_summary
from services.master.watch import EventHub
from services.protocol import (
    DashboardSnapshot,
    Events,
    LogMessage,
    Payload,
    QueryAck,
    RegisterMessage,
    ScalingReport,
    StatusMessage,
    StatusReport,
    SystemStatus,
    TaskAssigned,
    TaskMessage,
    TaskQueued,
    Topics,
    UserQuery,
    encode,
    now_ms,
)
from services.protocol.rpc import pb

log = logging.getLogger(__name__)

# How often, at most, old undelivered answers are dropped and idle sessions' rates forgotten.
PURGE_EVERY_MS = 60_000


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

    def clear_session(self, client_id: str) -> None:
        """Discard the broker's session of `client_id` and what is queued in it, without waiting."""


EXACT_POSITIONS = 100  # a queued user is told every change of its position up to here
RETELL_SHARE = 0.5  # deeper, when its position halved since it was last told (exact then, not every step)
DEEP_WALK_S = 2.0  # how often, at most, the queue beyond EXACT_POSITIONS is walked
POSITIONS_SLICE = 2_000  # queued tasks looked at between two yields of a walk


def worth_telling(position: int, told: int | None) -> bool:
    """Whether a queued user who was last told `told` should hear `position`: every change near the head,
    deeper only once the position halved. Exact positions deep in a long queue change for every queued task
    with every answer (O(queue) Socket.IO messages a pass: with 20,000 queued tasks and 1,000 workers, ~25 %
    of the master's samples), and even a move of a tenth costs each task ~66 messages from 100,000 to the
    head (~8,700 a second for 100,000 queued at 250 answers/s); halving costs about ten."""
    if told is None or position <= EXACT_POSITIONS:
        return position != told
    return position <= told * (1 - RETELL_SHARE)


class Master:
    """Owns the dispatcher; every handler runs on the event loop, so no locks are needed."""

    def __init__(
        self,
        settings: MasterSettings,
        publisher: Publisher,
        send: SendWithAck,
        journal: TaskJournal,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.dispatcher = Dispatcher(
            max_attempts=settings.max_attempts,
            allow_baseline=settings.allow_baseline_workers,
            lease_ms=round(settings.lease_seconds * 1000),
            forget_gone_after_ms=round(settings.forget_workers_after_seconds * 1000),
        )
        self.dispatcher.hold(True, clock())  # nothing is assigned before MQTT is up
        self.metrics = Metrics(lambda: state_counts(self.dispatcher))
        # What `/leader` says (standby masters set their own: `standby.Leading.info`).
        self.leader_info: Callable[[], dict[str, object]] = lambda: {"leading": True, "epoch": None, "name": ""}
        self.last_scaling: ScalingReport | None = None  # the autoscaler's last decision, shown in the status
        self.recent = RecentAnswers(started_ms=clock())  # the dashboard's answers per second and latencies
        self.journal = journal
        self.events = EventHub()
        self.deliveries = Deliveries(
            journal, send, clock, round(settings.answer_retention_seconds * 1000), on_delivered=self._delivered
        )
        self.intake = Intake(settings)  # the limits per session and address, and the queue's bound
        # Set when a queued task's position may have changed; `send_positions` tells the users.
        self.positions_changed = asyncio.Event()
        # Set when a promise could not be committed, or its commit's outcome is unknown: what this master holds
        # in memory may differ from the journal, so it stops and the next one restores from the journal.
        self.journal_failed = asyncio.Event()
        self.journal_failure: str | None = None
        self._publisher = publisher
        self._send = send
        self._clock = clock
        self._sent_positions: dict[str, int] = {}
        self._last_deep_walk_ms = 0
        self._clients: dict[str, str] = {}  # MQTT client id -> worker id, from the broker's log
        self._background: set[asyncio.Task[None]] = set()
        self._last_purge = clock()
        # Restored tasks whose user's key was not kept (no journal key), with their attempt at the restart:
        # a later attempt goes to a worker without the key, and the answer says so.
        self._keyless: dict[str, int] = {}

    def restore(self) -> None:
        """Take back what the journal holds from a previous run: open tasks and undelivered answers."""
        tasks = self.journal.open_tasks()
        answers = self.journal.pending_answers()
        lost = self.journal.keys_not_kept()
        self._keyless = {t.task_id: t.attempt for t in tasks if t.task_id in lost}
        if lost:
            self.log(f"{len(lost)} restored tasks lost their users' API keys (no journal key): their answers say so")
        workers = self.journal.known_workers()
        for w in workers:
            self.dispatcher.remember(w.worker_id, w.language, w.longest_task_ms, self._clock())
            if w.client_id:
                self._clients[w.client_id] = w.worker_id
        if workers:
            self.log(f"remembered {len(workers)} baseline workers from the journal")
        self.dispatcher.restore(tasks, self._clock())
        self.deliveries.restore(answers)
        if tasks or answers:
            self.log(f"restored {len(tasks)} open tasks and {len(answers)} undelivered answers from the journal")

    # -- users ------------------------------------------------------------------------------
    async def submit(self, session_id: str, query: UserQuery, address: str = "") -> QueryAck:
        """Accept a user's question or say clearly why not; the return value is the Socket.IO ack. `address` is
        the client's (its key for the limits per address)."""
        task = self.intake.admit(query, session_id, address, self._clock(), self.dispatcher)
        if isinstance(task, Refusal):
            return self.refuse(task.message, task.reason)
        self.journal.accepted(task)
        position, outcome = self.dispatcher.submit(task, task.submitted_ms)
        self.metrics.tasks.labels("accepted").inc()
        self._event("task.accepted", task, position=position)
        if position:
            self._sent_positions[task.task_id] = position
            await self._emit(Events.TASK_QUEUED, TaskQueued(taskId=task.task_id, position=position), session_id)
        await self._apply(outcome)
        # The acknowledgement is the promise: it waits for the commit of this turn's writes (the question's
        # among them). In the queue before that, not after: questions arriving together are admitted one by
        # one against the queue they make.
        try:
            await self.journal.durable()
        except JournalError as e:  # nothing promised (the question may still be answered, by the next master)
            log.error("question %s not recorded: %s", task.task_id[:8], e)
            self._journal_broke(e)
            return self.refuse("the master could not record your question: try again in a moment", "journal")
        return QueryAck.accept(task.task_id, position)

    def _journal_broke(self, error: JournalError) -> None:
        """A promise's commit failed: stop (serve() waits for this), so that nothing more is promised on a memory
        that may differ from the journal, and the master that restores from it next says what holds."""
        if not self.journal_failed.is_set():
            log.error("the journal failed (%s): this master stops; the next one restores from the journal", error)
            self.journal_failure = str(error)
            self.journal_failed.set()

    def refuse(self, message: str, reason: str = "bad_request") -> QueryAck:
        """The ack of a question that was not accepted, saying `message` (fit for the user); counted by `reason`."""
        self.metrics.tasks.labels("rejected").inc()
        self.metrics.refusals.labels(reason).inc()
        return QueryAck.refuse(message)

    def session_opened(self, session_id: str) -> None:
        """A connection of the session opened: the web edge in this process knows its connections itself."""

    def session_closed(self, session_id: str) -> None:
        """A connection of the session closed (see `session_opened`)."""

    def count_refusal(self, reason: str) -> None:
        """Count a refused connection by `reason`."""
        self.metrics.refusals.labels(reason).inc()

    def expects_acks(self, session_id: str) -> None:
        """A client of this session acknowledges its answers (it asked for the `user-query` acknowledgement)."""
        self.deliveries.expects_acks(session_id)

    async def status_report(self) -> StatusReport:
        """`status`, for a web edge in another process."""
        return self.status()

    async def leader(self) -> dict[str, object]:
        """Whether this master leads (and its epoch and name), for `/leader`."""
        return self.leader_info()

    async def metrics_text(self) -> bytes:
        """The Prometheus text of the metrics."""
        return self.metrics.render()

    async def dashboard_snapshot(self) -> DashboardSnapshot:
        """`dashboard`, for a web edge in another process."""
        return self.dashboard()

    async def session_connected(self, session_id: str) -> None:
        """A client joined a session: tell it where its open questions are and resend its answers."""
        if self.dispatcher.unfinished(session_id):
            for task in self.dispatcher.open_tasks():
                if task.session_id != session_id:
                    continue
                if task.state is TaskState.ASSIGNED:
                    assigned = TaskAssigned(taskId=task.task_id, workerId=task.worker_id or "")
                    await self._emit(Events.TASK_ASSIGNED, assigned, session_id)
                else:
                    self._sent_positions.pop(task.task_id, None)
                    self.positions_changed.set()
        if self.deliveries.has(session_id):
            await self.deliveries.resume(session_id)

    # -- workers over MQTT ------------------------------------------------------------------
    async def mqtt_up(self) -> None:
        """The broker is reachable: assignments may flow."""
        await self._apply(self.dispatcher.hold(False, self._clock()))

    def mqtt_down(self) -> None:
        """The broker is gone: hold assignments until it is back."""
        self.dispatcher.hold(True, self._clock())

    async def on_register(self, reg: RegisterMessage) -> None:
        """A worker (re)announced itself."""
        known = self.dispatcher.registry.get(reg.worker_id)
        outcome = self.dispatcher.worker_online(
            reg.worker_id, reg.language, self._clock(), reg.max_task_ms, reg.task_messages is not False
        )
        if known is None or known.state in (WorkerState.OFFLINE, WorkerState.LOST):
            self.log(f"worker {reg.worker_id} ({reg.language}) registered")
            self._event("worker.online", worker_id=reg.worker_id, language=reg.language)
        self._remember(reg.worker_id)
        await self._apply(outcome)

    async def on_status(self, status: StatusMessage) -> None:
        """A worker reported idle or busy, or its Last Will (or goodbye) says it is offline."""
        await self._worker_status(status, "went offline")

    async def on_broker_event(self, event: broker_log.Subscribed | broker_log.Disconnected) -> None:
        """The broker saw a client subscribe to a worker's tasks, or a client's connection close. The latter
        is how a baseline worker (no Last Will) that died is noticed at once."""
        if isinstance(event, broker_log.Subscribed):
            self._clients[event.client_id] = event.worker_id
            return
        worker_id = self._clients.pop(event.client_id, None)
        if worker_id is None or worker_id in self._clients.values():
            return  # not a worker's connection, or the worker is connected again on another one
        worker = self.dispatcher.registry.get(worker_id)
        if worker is None or not worker.baseline or worker.state is WorkerState.OFFLINE:
            return  # our workers' Last Will says it
        offline = StatusMessage(worker_id=worker.worker_id, status="offline")
        await self._worker_status(offline, "went offline (the broker saw its connection close)")

    async def _worker_status(self, status: StatusMessage, offline_reason: str) -> None:
        worker = self.dispatcher.registry.get(status.worker_id)
        was_online = worker is not None and worker.state is not WorkerState.OFFLINE
        outcome = self.dispatcher.worker_status(
            status.worker_id, status.status, self._clock(), status.task_id, status.attempt
        )
        if status.status == "offline":
            if was_online:
                self.log(f"worker {status.worker_id} {offline_reason}")
            self._forget_worker(status.worker_id)
        elif not was_online:
            self._remember(status.worker_id)
        self._event(f"worker.{status.status}", worker_id=status.worker_id, task_id=status.task_id or "")
        await self._apply(outcome)

    def _remember(self, worker_id: str) -> None:
        """Journal a baseline worker that is online, so that a restarted master still knows it."""
        worker = self.dispatcher.registry.get(worker_id)
        if worker is None or not worker.baseline or not self.settings.allow_baseline_workers:
            return
        client_id = next((c for c, w in self._clients.items() if w == worker_id), None)
        self.journal.worker_known(worker_id, worker.language, client_id)

    def _forget_worker(self, worker_id: str) -> None:
        if self.settings.allow_baseline_workers:
            self.journal.worker_gone(worker_id)

    def bad_message(self, source: str) -> None:
        """Count a payload from `source` (`mqtt`) that could not be read; the edge logged it."""
        self.metrics.bad_messages.labels(source).inc()

    # -- results over gRPC ------------------------------------------------------------------
    async def on_result(self, result: WorkerResult) -> tuple[bool, str]:
        """Accept or refuse a worker's result; an accepted one goes to its user at once."""
        now = self._clock()
        verdict = self.dispatcher.result(result.claim, now)
        if not verdict.accepted or verdict.task is None:
            self.metrics.results.labels("refused").inc()
            self.log(f"result from {result.worker_id[:64]} {verdict.message}")
            return False, verdict.message
        self.metrics.results.labels("accepted").inc()
        task = verdict.task
        self._journal_longest(self.dispatcher.registry.get(result.worker_id), now - task.assigned_ms)
        self.dispatcher.finish(task, result.failed)
        self.intake.answered(task, now)
        response = answer(task, result, now)
        if task.attempt > self._keyless.pop(task.task_id, task.attempt):  # sent after a restart without its key
            response = without_user_key(response)
        worker = self.dispatcher.registry.get(result.worker_id)
        self._event(
            "task.failed" if result.failed else "task.answered",
            task,
            worker_id=result.worker_id,
            processing_time_ms=result.processing_time_ms,
            started_timestamp=result.started_ms,
            completion_timestamp=result.completed_ms,
            reason=result.error[:200],
            language=worker.language if worker else "",
            model_time_ms=result.model_time_ms,
        )
        self.journal.finished(task, response, result.failed, now)
        # The worker's next task first, then the answer: sending the answer awaits the user's socket, and
        # the worker (idle now) should not wait for it (the scale benchmark's handover, p50 -3 ms).
        await self._apply(verdict.outcome)
        if worker is not None and not worker.task_messages and worker.state is WorkerState.IDLE:
            self._event("worker.idle", worker_id=worker.worker_id, task_id=task.task_id)  # it sends no idle
        try:
            await self.journal.durable()  # committed before the worker or the user hears of it
        except JournalError as e:
            self._journal_broke(e)
            raise ResultNotRecorded(f"the master could not record the result: {e}") from e
        await self.deliveries.deliver(task.task_id, task.session_id, response)
        self._record(task, result, now)
        return True, verdict.message

    def _journal_longest(self, worker: Worker | None, took_ms: int) -> None:
        """Journal a baseline worker's longest task when this one was it (its leases are sized by it)."""
        if worker is not None and worker.baseline and worker.longest_task_ms == took_ms and took_ms > 0:
            self.journal.worker_longest(worker.worker_id, took_ms)

    def _record(self, task: Task, result: WorkerResult, now: int) -> None:
        """Metrics of a finished task; with TASK_MESSAGES, also the results topic and the log line."""
        delivered = self._clock()
        outcome = "failed" if result.failed else "answered"
        self.metrics.tasks.labels(outcome).inc()
        self.metrics.latency.observe((delivered - task.submitted_ms) / 1000)
        self.metrics.wait.observe((task.assigned_ms - task.submitted_ms) / 1000)
        self.metrics.processing.observe(result.processing_time_ms / 1000)
        self.metrics.overhead.observe(max(0, delivered - task.submitted_ms - result.processing_time_ms) / 1000)
        self.recent.add(delivered, delivered - task.submitted_ms)
        if not self.settings.task_messages:
            return  # the same facts are on the Watch stream, built only while someone watches
        worker = self.dispatcher.registry.get(task.worker_id or "")
        message = summary(task, result, worker.language if worker else "", now)
        self._publisher.publish(self.topics.results, encode(message), qos=0)
        self.log(
            f"task {task.task_id[:8]} {outcome} by {result.worker_id} "
            f"in {result.processing_time_ms} ms (attempt {task.attempt})"
        )

    # -- the autoscaler ---------------------------------------------------------------------
    async def report_scaling(self, report: ScalingReport) -> None:
        """Record one decision of the autoscaler: the log and the log topic, the Watch stream, the metrics."""
        self.log(decision_line(report))
        self.last_scaling = report
        self.metrics.scaling(report.target, report.current, report.direction)
        if self.events.active:
            self.events.publish(decision_event(report, self._clock()))

    async def retire_worker(self, worker_id: str) -> bool | None:
        """Assign nothing more to `worker_id` (it stays listed) until it goes offline or registers again. Returns
        whether it holds no task now (stopping it loses nothing), None when the master does not know it."""
        worker = self.dispatcher.registry.retire(worker_id)
        if worker is None:
            return None
        idle = worker.task_id is None and worker.state is not WorkerState.BUSY
        self.log(f"worker {worker_id} retired ({'idle' if idle else 'busy'}): no more tasks for it")
        return idle

    # -- steps of the background loops -------------------------------------------------------
    async def tick(self) -> None:
        """Take back tasks whose lease ran out, forget workers gone for a while; at most once a minute, drop
        old undelivered answers."""
        now = self._clock()
        await self._apply(self.dispatcher.expire(now))
        for worker in self.dispatcher.forget_gone(now):
            self._forget_worker(worker.worker_id)
            if worker.state is WorkerState.OFFLINE and not worker.baseline:
                # Its connection is gone (Last Will or goodbye), but the broker keeps its persistent session,
                # task messages (users' keys) included, until it expires; it comes back with a fresh one.
                self._publisher.clear_session(worker.worker_id)
            gone_s = self.settings.forget_workers_after_seconds
            self.log(f"worker {worker.worker_id} forgotten: offline or lost for {gone_s:g} s")
        if now - self._last_purge >= PURGE_EVERY_MS:
            self._last_purge = now
            dropped = self.deliveries.purge()
            self.intake.forget_idle(now)
            if dropped:
                self.log(f"dropped {dropped} answers nobody came back for")

    async def send_positions(self) -> None:
        """Tell queued users their new position: near the head every change, deeper once it halved
        (`worth_telling`), the deep part of the queue walked at most every DEEP_WALK_S."""
        now = self._clock()
        deep = now - self._last_deep_walk_ms >= DEEP_WALK_S * 1000
        if deep:
            self._last_deep_walk_ms = now
        for i, (position, task) in enumerate(list(self.dispatcher.queued())):
            if position > EXACT_POSITIONS and not deep:
                break
            if i % POSITIONS_SLICE == POSITIONS_SLICE - 1:
                await asyncio.sleep(0)  # a deep queue is a long walk: let results and assignments through
            if task.state is not TaskState.QUEUED:
                # Assigned while this walk yielded: its entry is gone, and setting it again would keep it
                # forever (4,162 of 5,000 tasks in a small scale run) and tell its user a stale position.
                continue
            if worth_telling(position, self._sent_positions.get(task.task_id)):
                self._sent_positions[task.task_id] = position
                await self._emit(
                    Events.TASK_QUEUED, TaskQueued(taskId=task.task_id, position=position), task.session_id
                )

    # -- what it shows ----------------------------------------------------------------------
    def status_summary(self) -> SystemStatus:
        """Workers online, idle and busy, and the queue length: what the chat page shows."""
        return status_summary(self.dispatcher)

    def status(self) -> StatusReport:
        """The REST status: workers with state and counts, and the queue."""
        s = self.settings
        report = status_report(self.dispatcher, len(self.deliveries), s.advertised_grpc_endpoint, s.max_query_chars)
        return report.model_copy(update={"scaling": self.last_scaling}) if self.last_scaling else report

    def dashboard(self) -> DashboardSnapshot:
        """The dashboard's snapshot: workers, queue, and the recent answers per second and their latency."""
        now = self._clock()
        points = self.recent.series(now)
        return dashboard_snapshot(self.dispatcher, points, self.recent.summary(now, LAST_MINUTE_S), now)

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

    def log(self, message: str) -> None:
        """Log locally and on the shared log topic (callers never pass keys or session ids)."""
        log.info("%s", message)
        line = LogMessage(timestamp=self._clock(), source="master", message=message)
        self._publisher.publish(self.topics.logs, encode(line), qos=0)

    # -- shared -----------------------------------------------------------------------------
    async def _apply(self, outcome: Outcome) -> None:
        """Record and publish assignments, requeues and definitive failures, and tell the users."""
        for r in outcome.requeued:
            self.journal.requeued(r.task)
            self.metrics.tasks.labels("requeued").inc()
            self._event("task.requeued", r.task, worker_id=r.worker_id, reason=r.reason)
            self.log(f"task {r.task.task_id[:8]} requeued: attempt {r.task.attempt} on {r.worker_id} lost ({r.reason})")
            self._sent_positions.pop(r.task.task_id, None)
            self.positions_changed.set()
        for a in outcome.assignments:
            t = a.task
            self.journal.assigned(t)
            self._event("task.assigned", t, worker_id=a.worker_id)
            if self.events.active and not self._task_messages_from(a.worker_id):
                self._event("worker.busy", worker_id=a.worker_id, task_id=t.task_id)  # it sends no busy
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
            await self._emit(Events.TASK_ASSIGNED, TaskAssigned(taskId=t.task_id, workerId=a.worker_id), t.session_id)
        for f in outcome.failures:
            now = self._clock()
            response = failure(f.task, f.message, now)
            self.metrics.tasks.labels("failed").inc()
            self.intake.failed(f.task)
            self._event("task.failed", f.task, reason=f.message)
            self._sent_positions.pop(f.task.task_id, None)
            self.journal.finished(f.task, response, True, now)
            await self.deliveries.deliver(f.task.task_id, f.task.session_id, response)
            self.log(f"task {f.task.task_id[:8]} failed: {f.message}")
        if (outcome.assignments or outcome.requeued) and self._sent_positions:
            self.positions_changed.set()

    def _event(self, kind: str, task: Task | None = None, **fields: Any) -> None:
        """Tell the watchers (if any) what happened, with the system's state after it.

        Built as the gRPC `Event` at once: the hub streams it as is, and a domain event converted
        later would cost a copy per event per watcher on the hot path."""
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

    def _task_messages_from(self, worker_id: str) -> bool:
        worker = self.dispatcher.registry.get(worker_id)
        return worker is None or worker.task_messages

    def _delivered(self, task_id: str) -> None:
        self._event("task.delivered", task_id=task_id)

    def _assignment_lost_callback(self, task_id: str, attempt: int) -> Callable[[], None]:
        def lost() -> None:
            outcome = self.dispatcher.assignment_lost(task_id, attempt, self._clock())
            self._spawn(self._apply(outcome))

        return lost

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _emit(self, event: str, payload: Payload, session_id: str) -> None:
        await self._send(event, payload, session_id, None)
