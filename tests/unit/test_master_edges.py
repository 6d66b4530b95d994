"""Unit tests of the master's edges: what arrives on the wire becomes a domain object, or is refused."""

from __future__ import annotations

from services.master import broker_log
from services.master.grpc_edge import worker_result
from services.master.mqtt_edge import MqttEdge
from services.master.settings import MasterSettings
from services.protocol import RegisterMessage, StatusMessage, Topics
from services.protocol.rpc import pb

TOPICS = Topics()


class RecordingHandler:
    def __init__(self) -> None:
        self.got: list[RegisterMessage | StatusMessage | broker_log.Subscribed | broker_log.Disconnected] = []
        self.bad: list[str] = []

    async def on_register(self, reg: RegisterMessage) -> None:
        self.got.append(reg)

    async def on_status(self, status: StatusMessage) -> None:
        self.got.append(status)

    async def on_broker_event(self, event: broker_log.Subscribed | broker_log.Disconnected) -> None:
        self.got.append(event)

    def bad_message(self, source: str) -> None:
        self.bad.append(source)

    async def mqtt_up(self) -> None:
        pass

    def mqtt_down(self) -> None:
        pass


def bound_edge() -> tuple[MqttEdge, RecordingHandler]:
    edge, handler = MqttEdge(MasterSettings()), RecordingHandler()
    edge.bind(handler)
    return edge, handler


async def test_the_mqtt_edge_hands_the_master_decoded_messages() -> None:
    edge, handler = bound_edge()
    await edge._receive(TOPICS.register, b'{"worker_id": "go-worker-1", "language": "go", "timestamp": 1}')
    await edge._receive(TOPICS.status, b'{"worker_id": "go-worker-1", "status": "busy", "task_id": "t", "attempt": 2}')
    await edge._receive(TOPICS.logs, b"not for the master")
    assert handler.got == [
        RegisterMessage(worker_id="go-worker-1", language="go", timestamp=1),
        StatusMessage(worker_id="go-worker-1", status="busy", task_id="t", attempt=2),
    ]
    assert handler.bad == []


async def test_the_mqtt_edge_counts_bad_messages_and_passes_none_on() -> None:
    edge, handler = bound_edge()
    await edge._receive(TOPICS.register, b"\xff not json")
    await edge._receive(TOPICS.status, b'{"worker_id": "go-worker-1", "status": "sleeping"}')
    assert (handler.got, handler.bad) == ([], ["mqtt", "mqtt"])


async def test_the_mqtt_edge_passes_on_what_the_broker_log_says_of_workers_connections() -> None:
    edge, handler = bound_edge()
    await edge._receive(broker_log.SUBSCRIBE_TOPIC, b"2026-12-07T00:25:07: orig x 0 upb/workers/python-worker-ab/tasks")
    await edge._receive(broker_log.NOTICE_TOPIC, b"2026-12-07T00:25:07: New client connected from ::1 as orig x (p2).")
    await edge._receive(broker_log.NOTICE_TOPIC, b"1733532000: Client orig x closed its connection.")
    assert handler.got == [broker_log.Subscribed("orig x", "python-worker-ab"), broker_log.Disconnected("orig x")]
    assert handler.bad == []


def test_the_grpc_edge_reads_a_task_result_into_a_worker_result() -> None:
    result = worker_result(
        pb.TaskResult(
            worker_id="go-worker-1",
            session_id="t-1",
            ai_response="42",
            processing_time_ms=9,
            completion_timestamp=20,
            started_timestamp=-5,
            task_id="t-1",
            attempt=2,
            token="tok",
            error="",
            model="m",
            model_time_ms=3,
        )
    )
    assert (result.worker_id, result.task_id, result.attempt, result.token) == ("go-worker-1", "t-1", 2, "tok")
    assert (result.response, result.model, result.processing_time_ms, result.model_time_ms) == ("42", "m", 9, 3)
    assert (result.started_ms, result.completed_ms, result.failed) == (0, 20, False)  # before the epoch: not said
