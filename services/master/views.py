"""What the master shows of its state: the REST status, the chat page's summary and the dashboard's snapshot.

Pure functions over the dispatcher (and the recent answers' points): they read workers and task timings only,
never a question, an answer, a session id or a key."""

from __future__ import annotations

from collections.abc import Iterable

from services.master.dispatch import Dispatcher
from services.master.recent import SECOND_MS, Point
from services.master.registry import Worker, WorkerState
from services.protocol import (
    AnswerSeries,
    AnswerSummary,
    DashboardSnapshot,
    DashboardWorker,
    StatusReport,
    SystemStatus,
    WorkerStatus,
)

LAST_MINUTE_S = 60  # the dashboard's summary of the latest answers covers this many seconds


def state_counts(dispatcher: Dispatcher) -> tuple[int, int, dict[str, int]]:
    """Queue length, tasks in flight, and workers by state."""
    counts = {s.value: dispatcher.registry.count(s) for s in WorkerState}
    return dispatcher.queue_length, dispatcher.in_flight, counts


def status_summary(dispatcher: Dispatcher) -> SystemStatus:
    """Workers online, idle and busy, and the queue length: what the chat page shows."""
    registry = dispatcher.registry
    idle, busy = registry.count(WorkerState.IDLE), registry.count(WorkerState.BUSY)
    return SystemStatus(workers=idle + busy, idle=idle, busy=busy, queued=dispatcher.queue_length)


def status_report(
    dispatcher: Dispatcher, undelivered: int, grpc_endpoint: str = "", max_query_chars: int = 0
) -> StatusReport:
    """The REST status: workers with state and counts, the queue, what is in flight, where workers send
    results (`grpc_endpoint`, the master's advertised host:port: `lab load --url` finds it there) and the
    longest question accepted (the chat page's counter)."""
    registry = dispatcher.registry
    return StatusReport(
        workers=[
            WorkerStatus(
                worker_id=w.worker_id,
                language=w.language,
                state=w.state.value,
                tasks_done=w.tasks_done,
                tasks_failed=w.tasks_failed,
                current_task=w.task_id,
                last_seen=w.last_seen_ms,
                retired=w.retired,
            )
            for w in registry
        ],
        idle=registry.count(WorkerState.IDLE),
        busy=registry.count(WorkerState.BUSY),
        offline=registry.count(WorkerState.OFFLINE),
        lost=registry.count(WorkerState.LOST),
        queue_length=dispatcher.queue_length,
        in_flight=dispatcher.in_flight,
        undelivered=undelivered,
        mqtt_connected=not dispatcher.held,
        grpc_endpoint=grpc_endpoint,
        max_query_chars=max_query_chars,
    )


def dashboard_worker(dispatcher: Dispatcher, worker: Worker, now_ms: int) -> DashboardWorker:
    """One worker's row on the dashboard: its task (id and how long it has held it), counts, last seen."""
    task = dispatcher.task(worker.task_id) if worker.task_id else None
    held_ms = max(0, now_ms - task.assigned_ms) if task is not None and task.assigned_ms else None
    return DashboardWorker(
        workerId=worker.worker_id,
        language=worker.language,
        state=worker.state.value,
        taskId=worker.task_id,
        taskMs=held_ms,
        tasksDone=worker.tasks_done,
        tasksFailed=worker.tasks_failed,
        lastSeen=worker.last_seen_ms,
    )


def answer_series(points: Iterable[Point]) -> AnswerSeries:
    """Per-second points as the snapshot's parallel lists (compact: one number per second and list)."""
    points = list(points)
    return AnswerSeries(
        start=points[0].start_ms if points else 0,
        stepMs=SECOND_MS,
        answers=[p.answers for p in points],
        p50=[p.p50_ms for p in points],
        p95=[p.p95_ms for p in points],
    )


def answer_summary(point: Point, seconds: int) -> AnswerSummary:
    """One point over `seconds` as the snapshot's summary."""
    return AnswerSummary(seconds=seconds, answers=point.answers, p50=point.p50_ms, p95=point.p95_ms)


def dashboard_snapshot(
    dispatcher: Dispatcher, points: Iterable[Point], last_minute: Point, now_ms: int
) -> DashboardSnapshot:
    """The dashboard at `now_ms`: every known worker, workers by state, the queue, what is in flight, the recent
    answers per second, and the last minute's answers (`last_minute`, over 60 s)."""
    registry = dispatcher.registry
    return DashboardSnapshot(
        timestamp=now_ms,
        workers=[dashboard_worker(dispatcher, w, now_ms) for w in registry],
        idle=registry.count(WorkerState.IDLE),
        busy=registry.count(WorkerState.BUSY),
        offline=registry.count(WorkerState.OFFLINE),
        lost=registry.count(WorkerState.LOST),
        queued=dispatcher.queue_length,
        inFlight=dispatcher.in_flight,
        series=answer_series(points),
        lastMinute=answer_summary(last_minute, LAST_MINUTE_S),
    )
