"""Real protocol peers for tests: an MQTT worker that speaks the wire by hand, and a gRPC result sender."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import grpc
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lab.system.local import LocalCluster
from services.protocol import RegisterMessage, StatusMessage, TaskMessage, Topics, decode, encode
from services.protocol.rpc import pb, pb_grpc


class RawWorker:
    """A worker written against the wire contract only (as a Go, Java or original worker would be)."""

    def __init__(
        self,
        port: int,
        worker_id: str,
        prefix: str = "upb",
        language: str = "go",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.topics = Topics(prefix)
        self.worker_id = worker_id
        self.language = language
        self.tasks: queue.Queue[TaskMessage] = queue.Queue()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=worker_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        if username:
            self.client.username_pw_set(username, password)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("raw worker could not connect")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        client.subscribe(self.topics.tasks(self.worker_id), qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.tasks.put(decode(TaskMessage, bytes(message.payload)))

    def publish(self, topic: str, payload: bytes | str) -> None:
        """Publish anything, waiting until the broker has it."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def register(self) -> None:
        """Announce this worker as the baseline says."""
        self.publish(self.topics.register, encode(RegisterMessage(worker_id=self.worker_id, language=self.language)))

    def status(self, status: str, task_id: str | None = None, attempt: int | None = None) -> None:
        """Report idle/busy/offline (with the task attempt started or last finished)."""
        message = StatusMessage(worker_id=self.worker_id, status=status, task_id=task_id, attempt=attempt)  # type: ignore[arg-type]
        self.publish(self.topics.status, encode(message))

    def next_task(self, timeout: float = 10) -> TaskMessage:
        """The next task the master sent to this worker."""
        return self.tasks.get(timeout=timeout)

    def close(self) -> None:
        """Disconnect cleanly."""
        self.client.loop_stop()
        self.client.disconnect()


def send_result(endpoint: str, **fields: Any) -> pb.ResultAck:
    """Call the master's `SendResult` with the given fields."""
    with grpc.insecure_channel(endpoint) as channel:
        stub = pb_grpc.WorkerCallbackStub(channel)  # type: ignore[no-untyped-call]
        ack: pb.ResultAck = stub.SendResult(pb.TaskResult(**fields), timeout=10)
        return ack


def raw_json(data: object) -> bytes:
    """JSON bytes of anything, valid or not for the contract."""
    return json.dumps(data).encode()


def peer_for(cluster: LocalCluster, worker_id: str, language: str = "go") -> RawWorker:
    """A hand-driven worker on `cluster`'s broker, logged in as the workers are."""
    username, password = cluster.credentials.login("worker") if cluster.config.auth else (None, None)
    return RawWorker(cluster.mqtt_port, worker_id, cluster.config.topic_prefix, language, username, password)
