"""A worker's result as the master handles it, and what an ended task tells its user and the results topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from services.master.dispatch import ResultClaim, Task
from services.protocol import AiResponse, ResultSummary


@dataclass(frozen=True)
class WorkerResult:
    """What a worker sent back for one attempt (the gRPC edge builds it from a `TaskResult`)."""

    worker_id: str
    task_id: str = ""  # empty from baseline workers
    attempt: int = 0
    token: str = field(default="", repr=False)
    response: str = ""
    error: str = ""  # non-empty: the task failed, with a message fit for the user
    model: str = ""
    processing_time_ms: int = 0
    started_ms: int = 0  # 0: not said
    completed_ms: int = 0  # 0: not said
    model_time_ms: int = 0

    @property
    def failed(self) -> bool:
        """Whether the worker says the task failed."""
        return bool(self.error)

    @property
    def claim(self) -> ResultClaim:
        """Which task attempt this result says it answers."""
        return ResultClaim(self.worker_id, self.task_id, self.attempt, self.token)


def answer(task: Task, result: WorkerResult, now_ms: int) -> AiResponse:
    """The `ai-response` of an answered (or, with `error`, failed) task."""
    return AiResponse(
        taskId=task.task_id,
        query=task.query,
        response=result.error or result.response,
        workerId=result.worker_id,
        processingTime=result.processing_time_ms,
        timestamp=result.completed_ms or now_ms,
        queryTimestamp=task.submitted_ms,
        model=result.model,
        error=result.error,
    )


# Told to a user whose task was sent to a worker again after a restart of the master without a journal key.
KEY_NOT_KEPT_NOTE = (
    "Note: your API key was not kept across a restart of the service (it is never stored without a journal key), "
    "so this answer was made with the service's own key or its offline model."
)


def without_user_key(response: AiResponse) -> AiResponse:
    """`response` with a note that the user's key was lost in a restart (the worker used its own key or the
    offline model)."""
    note = f"\n\n({KEY_NOT_KEPT_NOTE})"
    return response.model_copy(
        update={"response": response.response + note, "error": response.error and response.error + note}
    )


def failure(task: Task, message: str, now_ms: int) -> AiResponse:
    """The `ai-response` of a task that failed for good without a worker's result."""
    return AiResponse(
        taskId=task.task_id,
        query=task.query,
        response=message,
        workerId="",
        processingTime=0,
        timestamp=now_ms,
        queryTimestamp=task.submitted_ms,
        model="",
        error=message,
    )


def summary(task: Task, result: WorkerResult, language: str, now_ms: int) -> ResultSummary:
    """The results-topic message of a finished task: timings only, no text and no key."""
    outcome: Literal["answered", "failed"] = "failed" if result.failed else "answered"
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
        started_timestamp=result.started_ms,
        completion_timestamp=result.completed_ms,
        received_timestamp=now_ms,
        processing_time_ms=result.processing_time_ms,
        model_time_ms=result.model_time_ms,
    )
