"""What the master shows: REST status, the page's summary, and the payloads of answers and results."""

from __future__ import annotations

from typing import Any, Literal

from services.master.dispatch import Dispatcher, Task
from services.master.registry import WorkerState
from services.protocol import ResultSummary
from services.protocol.rpc import pb


def state_counts(dispatcher: Dispatcher) -> tuple[int, int, dict[str, int]]:
    """Queue length, tasks in flight, and workers by state."""
    counts = {s.value: dispatcher.registry.count(s) for s in WorkerState}
    return dispatcher.queue_length, dispatcher.in_flight, counts


def status_summary(dispatcher: Dispatcher) -> dict[str, int]:
    """Workers online, idle and busy, and the queue length: what the chat page shows."""
    queued, _, counts = state_counts(dispatcher)
    online = counts["idle"] + counts["busy"]
    return {"workers": online, "idle": counts["idle"], "busy": counts["busy"], "queued": queued}


def status_report(dispatcher: Dispatcher, undelivered: int) -> dict[str, Any]:
    """The REST status: workers with state and counts, the queue, and what is in flight."""
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
        for w in dispatcher.registry
    ]
    queued, in_flight, counts = state_counts(dispatcher)
    return {
        "workers": workers,
        **counts,
        "queue_length": queued,
        "in_flight": in_flight,
        "undelivered": undelivered,
        "mqtt_connected": not dispatcher.held,
    }


def answer_payload(task: Task, result: pb.TaskResult, now_ms: int) -> dict[str, Any]:
    """The `ai-response` of an answered (or, with `error`, failed) task."""
    return {
        "taskId": task.task_id,
        "query": task.query,
        "response": result.error or result.ai_response,
        "workerId": result.worker_id,
        "processingTime": result.processing_time_ms,
        "timestamp": result.completion_timestamp or now_ms,
        "queryTimestamp": task.submitted_ms,
        "model": result.model,
        "error": result.error,
    }


def failure_payload(task: Task, message: str, now_ms: int) -> dict[str, Any]:
    """The `ai-response` of a task that failed for good without a worker's result."""
    return {
        "taskId": task.task_id,
        "query": task.query,
        "response": message,
        "workerId": "",
        "processingTime": 0,
        "timestamp": now_ms,
        "queryTimestamp": task.submitted_ms,
        "model": "",
        "error": message,
    }


def result_summary(task: Task, result: pb.TaskResult, language: str, now_ms: int) -> ResultSummary:
    """The results-topic message of a finished task: timings only, no text and no key."""
    outcome: Literal["answered", "failed"] = "failed" if result.error else "answered"
    return ResultSummary(
        task_id=task.task_id,
        worker_id=result.worker_id,
        language=language,
        attempt=task.attempt,
        outcome=outcome,
        error=result.error[:500],
        model=result.model,
        query_timestamp=task.submitted_ms,
        assigned_timestamp=task.assigned_ms,
        started_timestamp=max(0, result.started_timestamp),
        completion_timestamp=max(0, result.completion_timestamp),
        received_timestamp=now_ms,
        processing_time_ms=result.processing_time_ms,
        model_time_ms=result.model_time_ms,
    )
