"""Tests that the committed gRPC stubs are what `proto/` generates, and that the proto keeps the baseline."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from services.protocol.generate import ROOT, VIRTUAL, generate
from services.protocol.rpc import SERVICE_NAME, pb

COMMITTED = ROOT / VIRTUAL

BASELINE_TASK_RESULT = {
    "worker_id": (1, FieldDescriptor.TYPE_STRING),
    "session_id": (2, FieldDescriptor.TYPE_STRING),
    "original_query": (3, FieldDescriptor.TYPE_STRING),
    "ai_response": (4, FieldDescriptor.TYPE_STRING),
    "api_key": (5, FieldDescriptor.TYPE_STRING),
    "processing_time_ms": (6, FieldDescriptor.TYPE_INT64),
    "query_timestamp": (7, FieldDescriptor.TYPE_INT64),
    "completion_timestamp": (8, FieldDescriptor.TYPE_INT64),
}

EXTENSION_TASK_RESULT = {"task_id": 9, "attempt": 10, "token": 11, "error": 12, "model": 13}


def test_committed_stubs_are_byte_identical_to_freshly_generated_ones(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert {p.name for p in written} == {p.name for p in COMMITTED.iterdir() if p.is_file()}
    for fresh in written:
        assert fresh.read_bytes() == (COMMITTED / fresh.name).read_bytes(), (
            f"{VIRTUAL}/{fresh.name} is stale: run `python -m services.protocol.generate`"
        )


def test_task_result_keeps_the_baseline_field_numbers_names_and_types() -> None:
    fields = pb.TaskResult.DESCRIPTOR.fields_by_name
    found = {name: (fields[name].number, fields[name].type) for name in BASELINE_TASK_RESULT if name in fields}
    assert found == BASELINE_TASK_RESULT


def test_task_result_extensions_have_the_agreed_field_numbers() -> None:
    fields = pb.TaskResult.DESCRIPTOR.fields_by_name
    assert {name: fields[name].number for name in EXTENSION_TASK_RESULT if name in fields} == EXTENSION_TASK_RESULT


def test_task_result_extensions_never_reuse_a_baseline_number() -> None:
    extra = [f for f in pb.TaskResult.DESCRIPTOR.fields if f.name not in BASELINE_TASK_RESULT]
    assert extra
    assert all(f.number > 8 for f in extra)


def test_result_ack_keeps_the_baseline_fields() -> None:
    fields = pb.ResultAck.DESCRIPTOR.fields_by_name
    assert {name: (f.number, f.type) for name, f in fields.items()} == {
        "success": (1, FieldDescriptor.TYPE_BOOL),
        "message": (2, FieldDescriptor.TYPE_STRING),
    }


def test_service_is_worker_callback_send_result_in_package_worker() -> None:
    assert pb.DESCRIPTOR.package == "worker"
    service = pb.DESCRIPTOR.services_by_name["WorkerCallback"]
    assert service.full_name == SERVICE_NAME == "worker.WorkerCallback"
    method = service.methods_by_name["SendResult"]
    assert (method.input_type.full_name, method.output_type.full_name) == ("worker.TaskResult", "worker.ResultAck")
