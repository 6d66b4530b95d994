"""The wire contract in code: MQTT topics, Socket.IO events, JSON messages and gRPC stubs.

Nothing outside this package spells a topic, an event name or a message field.
"""

from services.protocol.errors import DecodeError
from services.protocol.events import Events
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
from services.protocol.topics import Topics

__all__ = [
    "DecodeError",
    "Events",
    "LogMessage",
    "MasterPresence",
    "RegisterMessage",
    "ResultSummary",
    "StatusMessage",
    "TaskMessage",
    "Topics",
    "decode",
    "encode",
    "now_ms",
    "validate",
]
