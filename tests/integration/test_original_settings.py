"""The original system's environment runs ours: a master and workers told where the broker is only by
MQTT_BROKER (an mqtt:// URL with the port) and where to call back only by MASTER_HOST and GRPC_PORT answer a
question."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from lab.system.ports import free_port
from lab.system.workers import LANGUAGES, worker_kind
from services.protocol.topics import Topics
from services.protocol.worker_ids import worker_language
from tests.conftest import ClusterFactory


def master_presence(cluster: LocalCluster) -> dict[str, object]:
    """The master's retained presence, read as the master user."""
    got: list[dict[str, object]] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-original-settings")
    client.username_pw_set(*cluster.credentials.login("master"))
    topic = Topics(cluster.config.topic_prefix).master_status

    def subscribe(c: mqtt.Client, *_: object) -> None:
        c.subscribe(topic, qos=1)

    def record(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got.append(json.loads(message.payload))
        ready.set()

    client.on_connect = subscribe
    client.on_message = record
    client.connect("127.0.0.1", cluster.mqtt_port)
    client.loop_start()
    try:
        assert ready.wait(10), "no master presence"
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0]


async def test_the_original_variables_alone_wire_the_master_and_every_worker(cluster_factory: ClusterFactory) -> None:
    mqtt_port, grpc_port = free_port(), free_port()
    # Workers of the languages that are built (CI builds all three); the Python worker always.
    fleet = ",".join(f"{language}=1" for language in LANGUAGES if worker_kind(language).problem() is None)
    cluster = cluster_factory(
        workers=fleet,
        work_seconds=0.2,
        mqtt_port=mqtt_port,
        grpc_port=grpc_port,
        extra_env={
            # The lab's own variables blanked (empty means unset): only the original's say where things are.
            "MQTT_HOST": "",
            "MQTT_PORT": "",
            "GRPC_ENDPOINT": "",
            "MQTT_BROKER": f"mqtt://127.0.0.1:{mqtt_port}",
            "MASTER_HOST": "localhost",  # not the default 127.0.0.1: the presence shows it was read
            "GRPC_PORT": str(grpc_port),
        },
    )
    presence = master_presence(cluster)
    assert presence["status"] == "online" and presence["grpc_endpoint"] == f"localhost:{grpc_port}"
    async with ChatClient(cluster.web_url) as user:
        for i in range(len(cluster.worker_ids)):
            await user.ask(f"original settings {i}")
        await user.wait_answers(len(cluster.worker_ids), timeout=30)
    answers = [e.answer for e in user.exchanges.values() if e.answer]
    assert len(answers) == len(cluster.worker_ids) and all(a.error == "" for a in answers), answers
    # One each: the master gives every idle worker a turn, so every language called back through MASTER_HOST.
    assert {worker_language(a.workerId) for a in answers} == {worker_language(w) for w in cluster.worker_ids}
