"""What the master shows of its state: the REST status and the chat page's summary."""

from __future__ import annotations

from services.master.dispatch import Dispatcher
from services.master.registry import WorkerState
from services.protocol import StatusReport, SystemStatus, WorkerStatus


def state_counts(dispatcher: Dispatcher) -> tuple[int, int, dict[str, int]]:
    """Queue length, tasks in flight, and workers by state."""
    counts = {s.value: dispatcher.registry.count(s) for s in WorkerState}
    return dispatcher.queue_length, dispatcher.in_flight, counts


def status_summary(dispatcher: Dispatcher) -> SystemStatus:
    """Workers online, idle and busy, and the queue length: what the chat page shows."""
    registry = dispatcher.registry
    idle, busy = registry.count(WorkerState.IDLE), registry.count(WorkerState.BUSY)
    return SystemStatus(workers=idle + busy, idle=idle, busy=busy, queued=dispatcher.queue_length)


def status_report(dispatcher: Dispatcher, undelivered: int) -> StatusReport:
    """The REST status: workers with state and counts, the queue, and what is in flight."""
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
    )
