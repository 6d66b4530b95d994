"""Tests of the JSON messages: baseline field names, round trips, extensions, and clear refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.protocol import (
    DecodeError,
    LogMessage,
    MasterPresence,
    RegisterMessage,
    ResultSummary,
    StatusMessage,
    TaskMessage,
    UserQuery,
    decode,
    encode,
    now_ms,
    validate,
)
from services.protocol.messages import Message

WORKER = "python-worker-3f9a1c"


def as_json(message: Message) -> dict[str, Any]:
    """What a receiver in any language sees: the parsed JSON object."""
    parsed = json.loads(encode(message))
    assert isinstance(parsed, dict)
    return parsed


def baseline_task(**extensions: Any) -> TaskMessage:
    return TaskMessage(
        worker_id=WORKER,
        session_id="s-1",
        query="What is MQTT?",
        api_key="",
        grpc_endpoint="master:50051",
        timestamp=1_700_000_000_000,
        **extensions,
    )


EXAMPLES: list[Message] = [
    RegisterMessage(worker_id=WORKER, language="python", timestamp=1),
    StatusMessage(worker_id=WORKER, status="idle", timestamp=2),
    StatusMessage(worker_id=WORKER, status="busy", timestamp=3),
    StatusMessage(worker_id=WORKER, status="offline"),
    baseline_task(),
    baseline_task(task_id="t-1", attempt=2, token="secret", model="gemini-flash-latest"),
    LogMessage(timestamp=4, source="master", message="worker joined"),
    ResultSummary(
        task_id="t-1",
        worker_id=WORKER,
        language="python",
        attempt=1,
        outcome="answered",
        model="offline",
        query_timestamp=10,
        assigned_timestamp=11,
        started_timestamp=12,
        completion_timestamp=20,
        received_timestamp=21,
        processing_time_ms=8,
        model_time_ms=3,
    ),
    MasterPresence(status="online", timestamp=5, grpc_endpoint="master:50051"),
    MasterPresence(status="offline"),
    UserQuery(query="What is gRPC?", apiKey="k", model="m"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: f"{type(m).__name__}")
def test_every_message_survives_an_encode_decode_round_trip(message: Message) -> None:
    raw = encode(message)
    assert isinstance(raw, bytes)
    assert decode(type(message), raw) == message
    assert decode(type(message), raw.decode()) == message


def test_register_message_has_exactly_the_baseline_fields() -> None:
    message = RegisterMessage(worker_id=WORKER, language="python", timestamp=1_700_000_000_000)
    assert as_json(message) == {
        "worker_id": WORKER,
        "language": "python",
        "status": "idle",
        "timestamp": 1_700_000_000_000,
    }


def test_register_timestamp_defaults_to_the_current_time_in_milliseconds() -> None:
    before = now_ms()
    message = RegisterMessage(worker_id=WORKER, language="python")
    assert before <= message.timestamp <= now_ms()


def test_status_message_has_exactly_the_baseline_fields() -> None:
    message = StatusMessage(worker_id=WORKER, status="busy", timestamp=7)
    assert as_json(message) == {"worker_id": WORKER, "status": "busy", "timestamp": 7}


def test_offline_last_will_without_timestamp_omits_the_key() -> None:
    assert as_json(StatusMessage(worker_id=WORKER, status="offline")) == {"worker_id": WORKER, "status": "offline"}


def test_task_message_without_extensions_has_exactly_the_baseline_fields() -> None:
    assert as_json(baseline_task()) == {
        "worker_id": WORKER,
        "session_id": "s-1",
        "query": "What is MQTT?",
        "api_key": "",
        "grpc_endpoint": "master:50051",
        "timestamp": 1_700_000_000_000,
    }


def test_task_message_carries_the_extension_keys_next_to_the_baseline_ones() -> None:
    data = as_json(baseline_task(task_id="t-1", attempt=1, token="tok", model="gemini-flash-latest"))
    assert set(data) == {
        "worker_id",
        "session_id",
        "query",
        "api_key",
        "grpc_endpoint",
        "timestamp",
        "task_id",
        "attempt",
        "token",
        "model",
    }
    assert (data["task_id"], data["attempt"], data["token"], data["model"]) == (
        "t-1",
        1,
        "tok",
        "gemini-flash-latest",
    )


def test_task_message_omits_the_model_key_when_no_model_was_asked_for() -> None:
    data = as_json(baseline_task(task_id="t-1", attempt=1, token="tok"))
    assert "model" not in data
    assert data["token"] == "tok"


def test_log_message_has_exactly_the_baseline_fields() -> None:
    assert as_json(LogMessage(timestamp=3, source=WORKER, message="hello")) == {
        "timestamp": 3,
        "source": WORKER,
        "message": "hello",
    }


def test_result_summary_carries_timings_and_no_text_or_key() -> None:
    summary = EXAMPLES[7]
    assert isinstance(summary, ResultSummary)
    assert set(as_json(summary)) == {
        "task_id",
        "worker_id",
        "language",
        "attempt",
        "outcome",
        "error",
        "model",
        "query_timestamp",
        "assigned_timestamp",
        "started_timestamp",
        "completion_timestamp",
        "received_timestamp",
        "processing_time_ms",
        "model_time_ms",
    }


def test_master_presence_has_status_timestamp_and_grpc_endpoint() -> None:
    online = MasterPresence(status="online", timestamp=9, grpc_endpoint="master:50051")
    assert as_json(online) == {"status": "online", "timestamp": 9, "grpc_endpoint": "master:50051"}


def test_baseline_worker_register_with_unknown_keys_decodes() -> None:
    raw = json.dumps(
        {
            "worker_id": "go-worker-ab12cd",
            "language": "go",
            "status": "idle",
            "timestamp": 1_700_000_000_000,
            "version": "1.4.2",
            "capabilities": ["chat"],
            "nested": {"x": 1},
        }
    ).encode()
    message = decode(RegisterMessage, raw)
    assert (message.worker_id, message.language, message.timestamp) == ("go-worker-ab12cd", "go", 1_700_000_000_000)
    assert "version" not in as_json(message)


def test_task_message_from_a_baseline_master_decodes_without_extensions() -> None:
    raw = json.dumps(
        {
            "worker_id": WORKER,
            "session_id": "abc",
            "query": "q",
            "api_key": "key-of-user",
            "grpc_endpoint": "master:50051",
            "timestamp": 5,
            "priority": "high",
        }
    )
    task = decode(TaskMessage, raw)
    assert (task.task_id, task.attempt, task.token, task.model) == (None, None, None, None)
    assert task.api_key == "key-of-user"


def test_worker_id_of_exactly_128_characters_is_accepted() -> None:
    worker_id = "w" * 128
    assert decode(StatusMessage, json.dumps({"worker_id": worker_id, "status": "idle"})).worker_id == worker_id


NOT_AN_OBJECT = [
    pytest.param(b"null", "null", id="null"),
    pytest.param(b"[1, 2]", "array", id="list"),
    pytest.param(b'"idle"', "string", id="string"),
    pytest.param(b"42", "number", id="number"),
    pytest.param(b"true", "boolean", id="boolean"),
]


@pytest.mark.parametrize(("raw", "got"), NOT_AN_OBJECT)
def test_json_that_is_not_an_object_is_refused(raw: bytes, got: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(StatusMessage, raw)
    assert info.value.reason == f"expected a JSON object, got {got}"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b'{"worker_id": "a", "status": "idle"', id="truncated"),
        pytest.param(b'{"worker_id": "\xff\xfe", "status": "idle"}', id="invalid-utf8"),
        pytest.param('{"worker_id": "a", "status": "idle"}'.encode("utf-16"), id="utf16"),
        pytest.param(b"", id="empty"),
    ],
)
def test_payload_that_is_not_utf8_json_is_refused(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(StatusMessage, raw)
    assert info.value.reason.startswith("not UTF-8 JSON")
    assert info.value.raw == raw


def test_decode_error_names_the_message_kind_and_keeps_the_payload() -> None:
    raw = b'{"language": "python", "timestamp": 1}'
    with pytest.raises(DecodeError) as info:
        decode(RegisterMessage, raw)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.kind == "register message"
    assert error.raw == raw
    assert str(error) == f"invalid register message: {error.reason}"


REGISTER = {"worker_id": WORKER, "language": "python", "status": "idle", "timestamp": 1}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"worker_id": None}, "worker_id", id="missing-worker_id"),
        pytest.param({"language": None}, "language", id="missing-language"),
        pytest.param({"worker_id": 17}, "worker_id", id="worker_id-number"),
        pytest.param({"language": ["python"]}, "language", id="language-list"),
        pytest.param({"timestamp": "1700000000000"}, "timestamp", id="timestamp-string"),
        pytest.param({"timestamp": True}, "timestamp", id="timestamp-bool"),
        pytest.param({"timestamp": 1.5}, "timestamp", id="timestamp-fraction"),
        pytest.param({"timestamp": -1}, "timestamp", id="timestamp-negative"),
        pytest.param({"worker_id": "python/worker"}, "worker_id", id="worker_id-slash"),
        pytest.param({"worker_id": "python+worker"}, "worker_id", id="worker_id-plus"),
        pytest.param({"worker_id": "python#worker"}, "worker_id", id="worker_id-hash"),
        pytest.param({"worker_id": ""}, "worker_id", id="worker_id-empty"),
        pytest.param({"worker_id": "w" * 129}, "worker_id", id="worker_id-129-chars"),
        pytest.param({"worker_id": "python-worker-1\n"}, "worker_id", id="worker_id-newline"),
        pytest.param({"status": "busy"}, "status", id="register-not-idle"),
    ],
)
def test_bad_register_field_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    data = {k: v for k, v in {**REGISTER, **changes}.items() if v is not None}
    with pytest.raises(DecodeError) as info:
        decode(RegisterMessage, json.dumps(data).encode())
    assert info.value.reason.startswith(f"{field}: ")


@pytest.mark.parametrize("status", ["sleeping", "IDLE", "", "online"])
def test_status_outside_idle_busy_offline_is_refused(status: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(StatusMessage, json.dumps({"worker_id": WORKER, "status": status}))
    assert info.value.reason.startswith("status: ")


def test_task_attempt_given_as_a_string_is_refused() -> None:
    data = {**json.loads(encode(baseline_task())), "task_id": "t", "attempt": "2", "token": "x"}
    with pytest.raises(DecodeError) as info:
        decode(TaskMessage, json.dumps(data))
    assert info.value.reason.startswith("attempt: ")


def test_validate_reads_an_already_parsed_user_query() -> None:
    query = validate(UserQuery, {"query": "What is MQTT?", "apiKey": "k", "unknown": 1})
    assert (query.query, query.apiKey, query.model) == ("What is MQTT?", "k", None)


def test_validate_accepts_a_user_query_without_api_key() -> None:
    assert validate(UserQuery, {"query": "hi"}).apiKey is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param("What is MQTT?", "expected a JSON object, got string", id="string"),
        pytest.param(None, "expected a JSON object, got null", id="none"),
        pytest.param(["q"], "expected a JSON object, got array", id="list"),
    ],
)
def test_validate_refuses_a_user_query_that_is_not_an_object(payload: object, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        validate(UserQuery, payload)
    assert info.value.kind == "user-query"
    assert info.value.reason == reason
    assert info.value.raw == payload


@pytest.mark.parametrize("payload", [{}, {"query": 5}, {"query": None}, {"apiKey": "k"}])
def test_validate_refuses_a_user_query_without_a_text_query_naming_the_field(payload: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as info:
        validate(UserQuery, payload)
    assert info.value.reason.startswith("query: ")


def test_validate_keeps_the_raw_payload_it_is_given() -> None:
    with pytest.raises(DecodeError) as info:
        validate(StatusMessage, {"worker_id": WORKER}, raw=b"original bytes")
    assert info.value.raw == b"original bytes"
    assert info.value.reason.startswith("status: ")
