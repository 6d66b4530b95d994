"""JSON messages of the wire contract, with one `encode`/`decode` pair for all of them.

Unknown keys are ignored (extensions are additive); missing or mistyped baseline keys are a
`DecodeError` that says which field is wrong.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError

from services.protocol.errors import DecodeError

# A worker id ends up inside a topic name: no wildcards, no separators, bounded length.
WORKER_ID_PATTERN = r"[A-Za-z0-9_.:-]{1,128}"
WorkerId = Annotated[str, StringConstraints(pattern=f"^{WORKER_ID_PATTERN}$")]
Timestamp = Annotated[StrictInt, Field(ge=0)]
Language = Annotated[str, StringConstraints(min_length=1, max_length=32)]

M = TypeVar("M", bound="Message")


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the unit of every timestamp on the wire."""
    return time.time_ns() // 1_000_000


class Message(BaseModel):
    """Base of every JSON message: frozen, unknown keys ignored, ints not parsed from strings."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=False, str_max_length=1_000_000)
    kind: ClassVar[str] = "message"


class RegisterMessage(Message):
    """`workers/register`: a worker (re)announces itself, always as idle."""

    kind: ClassVar[str] = "register message"
    worker_id: WorkerId
    language: Language
    status: Literal["idle"] = "idle"
    timestamp: Timestamp = Field(default_factory=now_ms)
    max_task_ms: StrictInt | None = Field(default=None, gt=0)  # extension: work + model timeout, sizes leases
    # Extension: False from a worker that follows a master's `task_messages: false` (no busy, idle or log line
    # per task: the master knows it is busy from the assignment and idle from the accepted result). Unset: sends them.
    task_messages: bool | None = None


class StatusMessage(Message):
    """`workers/status`: idle or busy from the worker, offline from its Last Will."""

    kind: ClassVar[str] = "status message"
    worker_id: WorkerId
    status: Literal["idle", "busy", "offline"]
    timestamp: Timestamp | None = None
    task_id: str | None = None  # extension: the task started (busy) or last finished (idle)
    attempt: StrictInt | None = None  # extension: which attempt of that task


class TaskMessage(Message):
    """`workers/{id}/tasks`: one attempt at one task, sent to the worker it is assigned to.

    `session_id` is baseline; we fill it with the task id, because a user's session id is a
    bearer secret that is never published.
    """

    kind: ClassVar[str] = "task message"
    worker_id: WorkerId
    session_id: str
    query: str
    api_key: str = ""
    grpc_endpoint: str
    timestamp: Timestamp
    task_id: str | None = None
    attempt: StrictInt | None = None
    token: str | None = None
    model: str | None = None


class LogMessage(Message):
    """`logs`: one human-readable line."""

    kind: ClassVar[str] = "log message"
    timestamp: Timestamp = Field(default_factory=now_ms)
    source: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    message: Annotated[str, StringConstraints(max_length=10_000)]


class ResultSummary(Message):
    """`results`: what happened to one finished task; timings only, no text and no key."""

    kind: ClassVar[str] = "result summary"
    task_id: str
    worker_id: str
    language: str = ""
    attempt: StrictInt
    outcome: Literal["answered", "failed"]
    error: str = ""
    model: str = ""
    query_timestamp: Timestamp
    assigned_timestamp: Timestamp
    started_timestamp: Timestamp = 0
    completion_timestamp: Timestamp
    received_timestamp: Timestamp
    processing_time_ms: StrictInt
    model_time_ms: StrictInt = 0


class MasterPresence(Message):
    """`master/status`: retained; `online` when the master is up, `offline` from its Last Will."""

    kind: ClassVar[str] = "master presence"
    status: Literal["online", "offline"]
    timestamp: Timestamp | None = None
    grpc_endpoint: str = ""
    # Extension: False when the master needs no per-task messages from its workers (busy, idle, log lines):
    # a worker that knows it may leave them out; one that does not sends them as always. Unset: they are needed.
    task_messages: bool | None = None
    # Extension (standby masters): the leader's epoch, higher for each new leader. A worker keeps the highest it has
    # seen and ignores a presence with a lower one (a deposed leader's, or its Last Will). Unset: a single master.
    epoch: StrictInt | None = Field(default=None, ge=0)


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def decode(cls: type[M], raw: bytes | str) -> M:
    """Read one message from UTF-8 JSON (an MQTT payload)."""
    try:
        data: Any = json.loads(raw if isinstance(raw, str) else raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DecodeError(cls.kind, f"not UTF-8 JSON ({e})", raw) from e
    return validate(cls, data, raw)


def validate(cls: type[M], data: object, raw: object = None) -> M:
    """Read one message from an already parsed value (a Socket.IO payload or a REST body)."""
    if not isinstance(data, dict):
        raise DecodeError(cls.kind, f"expected a JSON object, got {json_type(data)}", data if raw is None else raw)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise DecodeError(cls.kind, f"{where}: {first['msg']}", data if raw is None else raw) from e


def encode(message: Message) -> bytes:
    """The UTF-8 JSON bytes of a message; optional extension keys left unset are omitted."""
    return message.model_dump_json(exclude_none=True).encode()
