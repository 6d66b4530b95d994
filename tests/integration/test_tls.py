"""Results (gRPC) and messages (MQTT) travel over TLS when given certificates of a throwaway CA."""

from __future__ import annotations

import queue
import uuid
from pathlib import Path

import grpc
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from lab.loadgen.client import ChatClient
from lab.system.broker import BrokerTls
from services.protocol.rpc import pb, pb_grpc
from tests.conftest import ClusterFactory
from tests.tls import make_tls


async def test_results_reach_the_master_over_tls(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    cluster = cluster_factory(
        workers=1,
        work_seconds=0.0,
        extra_env={"GRPC_TLS_CERT": str(tls.cert), "GRPC_TLS_KEY": str(tls.key), "GRPC_TLS_CA": str(tls.ca)},
    )
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("over TLS please")
        await user.wait_answers(1, timeout=20)
    assert asked.answer is not None and asked.answer.error == ""

    # A client that does not speak TLS gets nowhere; one that trusts the CA is heard (and refused).
    with grpc.insecure_channel(cluster.grpc_endpoint) as plain, pytest.raises(grpc.RpcError):
        pb_grpc.WorkerCallbackStub(plain).SendResult(pb.TaskResult(worker_id="x"), timeout=3)  # type: ignore[no-untyped-call]
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca.read_bytes())
    with grpc.secure_channel(cluster.grpc_endpoint, credentials) as secure:
        ack = pb_grpc.WorkerCallbackStub(secure).SendResult(pb.TaskResult(worker_id="x"), timeout=5)  # type: ignore[no-untyped-call]
    assert not ack.success and "task_id" in ack.message


def _connack(port: int, login: tuple[str, str], ca: Path | None = None) -> ReasonCode | None:
    """The broker's CONNACK to a paho client (TLS when given `ca`), or None if it closed the connection first."""
    answers: queue.Queue[ReasonCode | None] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tls-probe-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(*login)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    client.on_connect = lambda c, userdata, flags, rc, props: answers.put(rc)
    client.on_disconnect = lambda c, userdata, flags, rc, props: answers.put(None)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        return answers.get(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_master_and_workers_talk_to_the_broker_over_tls(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    cluster = cluster_factory(workers=1, work_seconds=0.0, broker_tls=BrokerTls(tls.ca, tls.cert, tls.key))
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("over TLS please")
        await user.wait_answers(1, timeout=20)
    assert asked.answer is not None and asked.answer.error == ""

    # With the right password, a client that does not speak TLS gets no CONNACK; one that trusts the CA does.
    login = cluster.credentials.login("worker")
    assert _connack(cluster.mqtt_port, login) is None
    accepted = _connack(cluster.mqtt_port, login, ca=tls.ca)
    assert accepted is not None and not accepted.is_failure
