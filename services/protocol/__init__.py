"""The wire contract in code: MQTT topics, Socket.IO events and payloads, the REST bodies, JSON
messages, the worker id convention and gRPC stubs.

Nothing outside this package spells a topic, an event name or a message field.
"""

from services.protocol.errors import DecodeError
from services.protocol.events import DASHBOARD_AUTH_KEY, Events
from services.protocol.messages import (
    LogMessage,
    MasterPresence,
    RegisterMessage,
    ResultSummary,
    StatusMessage,
    TaskMessage,
    decode,
    encode,
    now_ms,
    validate,
)
from services.protocol.payloads import (
    AiResponse,
    AnswerSeries,
    AnswerSummary,
    DashboardSnapshot,
    DashboardWorker,
    Payload,
    QueryAck,
    SystemStatus,
    TaskAssigned,
    TaskQueued,
    UserQuery,
)
from services.protocol.rest import ScalingReport, StatusReport, WorkerStatus
from services.protocol.topics import Topics
from services.protocol.worker_ids import make_worker_id, worker_language

__all__ = [
    "DASHBOARD_AUTH_KEY",
    "AiResponse",
    "AnswerSeries",
    "AnswerSummary",
    "DashboardSnapshot",
    "DashboardWorker",
    "DecodeError",
    "Events",
    "LogMessage",
    "MasterPresence",
    "Payload",
    "QueryAck",
    "RegisterMessage",
    "ResultSummary",
    "ScalingReport",
    "StatusMessage",
    "StatusReport",
    "SystemStatus",
    "TaskAssigned",
    "TaskMessage",
    "TaskQueued",
    "Topics",
    "UserQuery",
    "WorkerStatus",
    "decode",
    "encode",
    "make_worker_id",
    "now_ms",
    "validate",
    "worker_language",
]
