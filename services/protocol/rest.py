"""The master's REST bodies: `GET /api/status`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import StrictBool

from services.protocol.messages import Message
from services.protocol.payloads import Count, Payload, WorkerStateName


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
