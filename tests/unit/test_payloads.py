"""Tests of the Socket.IO payloads and the REST status: the exact JSON on the wire, and reading it back."""

from __future__ import annotations

from typing import Any

import pytest

from services.protocol import (
    AiResponse,
    DecodeError,
    Payload,
    QueryAck,
    StatusReport,
    SystemStatus,
    TaskAssigned,
    TaskQueued,
    UserQuery,
    WorkerStatus,
    validate,
)

ANSWER: dict[str, Any] = {
    "taskId": "t-1",
    "query": "What is MQTT?",
    "response": "A protocol.",
    "workerId": "go-worker-ab12cd",
    "processingTime": 812,
    "timestamp": 1_700_000_000_900,
    "queryTimestamp": 1_700_000_000_000,
    "model": "offline",
    "error": "",
}
STATUS: dict[str, Any] = {
    "workers": [
        {
            "worker_id": "go-worker-ab12cd",
            "language": "go",
            "state": "busy",
            "tasks_done": 3,
            "tasks_failed": 1,
            "current_task": "t-1",
            "last_seen": 1_700_000_000_000,
        },
        {
            "worker_id": "java-worker-77aa01",
            "language": "java",
            "state": "lost",
            "tasks_done": 5,
            "tasks_failed": 0,
            "current_task": None,
            "last_seen": 1_699_999_000_000,
        },
        {
            "worker_id": "python-worker-3f9a1c",
            "language": "python",
            "state": "idle",
            "tasks_done": 0,
            "tasks_failed": 0,
            "current_task": None,
            "last_seen": 1_700_000_000_001,
        },
    ],
    "idle": 1,
    "busy": 1,
    "offline": 0,
    "lost": 1,
    "queue_length": 2,
    "in_flight": 1,
    "undelivered": 0,
    "mqtt_connected": True,
    "grpc_endpoint": "master:50051",
    "max_query_chars": 8000,
}

# (model, the JSON object it must be on the wire, keys in this order)
WIRE: list[tuple[Payload, dict[str, Any]]] = [
    (QueryAck.accept("t-1", 0), {"taskId": "t-1", "position": 0}),
    (QueryAck.accept("t-1", 3), {"taskId": "t-1", "position": 3}),
    (QueryAck.refuse("the question is empty"), {"error": "the question is empty"}),
    (TaskQueued(taskId="t-1", position=2), {"taskId": "t-1", "position": 2}),
    (TaskAssigned(taskId="t-1", workerId="go-worker-ab12cd"), {"taskId": "t-1", "workerId": "go-worker-ab12cd"}),
    (AiResponse(**ANSWER), ANSWER),
    (SystemStatus(workers=3, idle=1, busy=2, queued=4), {"workers": 3, "idle": 1, "busy": 2, "queued": 4}),
    (StatusReport(**STATUS), STATUS),
    (UserQuery(query="hi"), {"query": "hi"}),
    (UserQuery(query="hi", apiKey="k"), {"query": "hi", "apiKey": "k"}),
]


@pytest.mark.parametrize(("payload", "wire"), WIRE, ids=lambda v: type(v).__name__)
def test_every_payload_dumps_to_exactly_its_wire_object(payload: Payload, wire: dict[str, Any]) -> None:
    dumped = payload.dump()
    assert dumped == wire
    assert list(dumped) == list(wire)  # same keys, same order


@pytest.mark.parametrize(("payload", "wire"), WIRE, ids=lambda v: type(v).__name__)
def test_every_payload_reads_back_from_its_wire_object(payload: Payload, wire: dict[str, Any]) -> None:
    assert validate(type(payload), wire) == payload


def test_an_acknowledgement_says_whether_the_question_was_accepted() -> None:
    accepted = validate(QueryAck, {"taskId": "t-1", "position": 0})
    refused = validate(QueryAck, {"error": "too many questions"})
    assert (accepted.accepted, accepted.taskId, accepted.position) == (True, "t-1", 0)
    assert (refused.accepted, refused.error) == (False, "too many questions")


@pytest.mark.parametrize("ack", [{}, {"taskId": "t-1"}, {"position": 1}, None, "ok"], ids=str)
def test_an_acknowledgement_that_is_neither_form_is_a_decode_error(ack: object) -> None:
    with pytest.raises(DecodeError):
        validate(QueryAck, ack)


def test_payloads_of_the_original_master_read_without_our_extensions() -> None:
    answer = validate(
        AiResponse, {"query": "q", "response": "r", "workerId": "go-worker-1", "processingTime": 5, "timestamp": 9}
    )
    assert (answer.taskId, answer.queryTimestamp, answer.model, answer.error, answer.failed) == ("", 0, "", "", False)
    assert validate(TaskQueued, {"position": 2}).position == 2


def test_a_failed_answer_says_so() -> None:
    assert AiResponse(**dict(ANSWER, error="Sorry", response="Sorry")).failed


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (TaskQueued, {"taskId": "t", "position": -1}),
        (SystemStatus, {"workers": 1, "idle": 1, "busy": 0}),
        (WorkerStatus, dict(STATUS["workers"][0], state="sleeping")),
        (StatusReport, dict(STATUS, mqtt_connected="yes")),
        (AiResponse, dict(ANSWER, processingTime="fast")),
    ],
    ids=["negative position", "missing queued", "unknown state", "non-boolean", "non-number"],
)
def test_a_malformed_payload_is_a_decode_error_naming_the_field(model: type[Payload], data: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        validate(model, data)
