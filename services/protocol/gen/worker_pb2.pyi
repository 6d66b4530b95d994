from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TaskResult(_message.Message):
    __slots__ = ("worker_id", "session_id", "original_query", "ai_response", "api_key", "processing_time_ms", "query_timestamp", "completion_timestamp", "task_id", "attempt", "token", "error", "model", "started_timestamp", "model_time_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_QUERY_FIELD_NUMBER: _ClassVar[int]
    AI_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STARTED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MODEL_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    session_id: str
    original_query: str
    ai_response: str
    api_key: str
    processing_time_ms: int
    query_timestamp: int
    completion_timestamp: int
    task_id: str
    attempt: int
    token: str
    error: str
    model: str
    started_timestamp: int
    model_time_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., session_id: _Optional[str] = ..., original_query: _Optional[str] = ..., ai_response: _Optional[str] = ..., api_key: _Optional[str] = ..., processing_time_ms: _Optional[int] = ..., query_timestamp: _Optional[int] = ..., completion_timestamp: _Optional[int] = ..., task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., token: _Optional[str] = ..., error: _Optional[str] = ..., model: _Optional[str] = ..., started_timestamp: _Optional[int] = ..., model_time_ms: _Optional[int] = ...) -> None: ...

class ResultAck(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    def __init__(self, snapshot: _Optional[bool] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("kind", "timestamp", "task_id", "worker_id", "attempt", "position", "processing_time_ms", "query_timestamp", "started_timestamp", "completion_timestamp", "language", "reason", "queue_length", "busy_workers", "idle_workers", "model_time_ms", "target_workers", "current_workers")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STARTED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    BUSY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    IDLE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TARGET_WORKERS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_WORKERS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    timestamp: int
    task_id: str
    worker_id: str
    attempt: int
    position: int
    processing_time_ms: int
    query_timestamp: int
    started_timestamp: int
    completion_timestamp: int
    language: str
    reason: str
    queue_length: int
    busy_workers: int
    idle_workers: int
    model_time_ms: int
    target_workers: int
    current_workers: int
    def __init__(self, kind: _Optional[str] = ..., timestamp: _Optional[int] = ..., task_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., attempt: _Optional[int] = ..., position: _Optional[int] = ..., processing_time_ms: _Optional[int] = ..., query_timestamp: _Optional[int] = ..., started_timestamp: _Optional[int] = ..., completion_timestamp: _Optional[int] = ..., language: _Optional[str] = ..., reason: _Optional[str] = ..., queue_length: _Optional[int] = ..., busy_workers: _Optional[int] = ..., idle_workers: _Optional[int] = ..., model_time_ms: _Optional[int] = ..., target_workers: _Optional[int] = ..., current_workers: _Optional[int] = ...) -> None: ...
