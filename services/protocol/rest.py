"""The master's REST bodies: `GET /api/status`, and `POST /api/scaling` from the autoscaler."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, model_validator

from services.protocol.messages import Message, Timestamp
from services.protocol.payloads import Count, Payload, WorkerStateName

# A rate, a time or a share the autoscaler measured or predicted: a finite number, never negative.
Measure = Annotated[float, Field(ge=0, allow_inf_nan=False)]
REASON_MAX_CHARS = 500


class WorkerStatus(Message):
    """One worker in the status: what the master believes it is doing, and its counts."""

    kind: ClassVar[str] = "worker status"
    worker_id: str
    language: str
    state: WorkerStateName
    tasks_done: Count
    tasks_failed: Count
    current_task: str | None  # the task it holds, null when none
    last_seen: Count  # when the master last heard from it (ms)
    # Extension: the master assigns it nothing more (`POST /api/workers/{id}/retire`) until it goes offline or
    # registers again. On the wire only when true, so a status without retired workers is the baseline's.
    retired: StrictBool = Field(default=False, exclude_if=lambda retired: not retired)


class StatusReport(Payload):
    """`GET /api/status`: every known worker, workers by state, the queue and what is in flight."""

    kind: ClassVar[str] = "status report"
    workers: list[WorkerStatus]
    idle: Count
    busy: Count
    offline: Count
    lost: Count = 0  # workers whose lease ran out and that have not reported since (no tasks for them)
    queue_length: Count  # tasks waiting for a worker
    in_flight: Count  # tasks assigned and not answered yet
    undelivered: Count  # answers kept until a client of their session acknowledges them
    mqtt_connected: StrictBool
    grpc_endpoint: str = ""  # host:port workers send results to (the master's advertised one); "" when not said
    max_query_chars: Count = 0  # the longest question accepted, in characters (MAX_QUERY_CHARS); 0: not said
    # Extension: the autoscaler's last decision (`POST /api/scaling`), for `lab load` and the like. On the wire
    # only when there was one, so a status without an autoscaler is the baseline's.
    scaling: ScalingReport | None = Field(default=None, exclude_if=lambda scaling: scaling is None)


class ScalingReport(Payload):
    """`POST /api/scaling` (extension): one decision of the autoscaler and what it was made from. The master logs
    it, publishes it on the log topic and the Watch stream (`scale.decision`) and keeps it in its metrics."""

    kind: ClassVar[str] = "scaling report"
    timestamp: Timestamp  # when it was decided (ms since the epoch)
    current: Count  # workers running or starting when it was decided
    target: Count  # workers it wants
    direction: Literal["up", "down", "hold"]
    reason: Annotated[str, Field(max_length=REASON_MAX_CHARS)]  # one sentence: why this target
    queue_length: Count  # what it saw: tasks waiting, workers busy and idle
    busy: Count
    idle: Count
    arrival_rate_per_s: Measure  # questions accepted per second, lately
    service_time_s: Measure  # mean processing time it assumed
    utilization: Measure  # predicted at the target
    predicted_wait_s: Measure | None  # predicted mean wait in the queue at the target; null: unstable or unknown

    @model_validator(mode="after")
    def _direction_of_the_change(self) -> ScalingReport:
        said = "up" if self.target > self.current else "down" if self.target < self.current else "hold"
        if self.direction != said:
            raise ValueError(f"direction {self.direction!r} does not match {self.current} -> {self.target}")
        return self


StatusReport.model_rebuild()
