"""A user's API key travels only in the task message to the worker that does the task."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from tests.conftest import ClusterFactory
from tests.fakes.gemini import ANSWER_PREFIX, FakeGeminiThread

KEY = "fake-ok-LEAKCHECK-7f3a9c"


class Tap:
    """Records every MQTT message under the topic prefix, as the master user (the observer may not read
    task messages)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-tap")
        self.client.username_pw_set(*cluster.credentials.login("master"))
        prefix = cluster.config.topic_prefix

        def subscribe(client: mqtt.Client, *_: object) -> None:
            client.subscribe(f"{prefix}/#", qos=1)
            ready.set()

        self.client.on_connect = subscribe
        self.client.on_message = self._record
        self.client.connect("127.0.0.1", cluster.mqtt_port)
        self.client.loop_start()
        assert ready.wait(10), "the tap could not connect"

    def _record(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_the_key_appears_only_in_the_task_message_to_the_assigned_worker(
    cluster_factory: ClusterFactory,
) -> None:
    lines: list[str] = []
    with FakeGeminiThread() as base_url:
        cluster = cluster_factory(
            workers=2,
            work_seconds=0.2,
            model_mode="auto",
            # Every message there can be (TASK_MESSAGES: statuses, results, log lines per task) is checked.
            extra_env={
                "GEMINI_BASE_URL": base_url,
                "NO_PROXY": "127.0.0.1,localhost",
                "LOG_LEVEL": "DEBUG",
                "TASK_MESSAGES": "true",
            },
            log_sink=lambda name, line: lines.append(f"{name} | {line}"),
        )
        tap = Tap(cluster)
        try:
            async with ChatClient(cluster.web_url) as user:
                asked = await user.ask("keep my key safe", api_key=KEY)
                await user.wait_answers(1, timeout=20)
                await asyncio.sleep(0.5)  # the last status, log and result messages
        finally:
            tap.close()
    assert asked.answer is not None and asked.answer.response == ANSWER_PREFIX + "keep my key safe"
    assert KEY not in json.dumps(asked.answer.dump())
    leaks = [(topic, payload) for topic, payload in tap.messages if KEY.encode() in payload]
    assert [topic for topic, _ in leaks] == [f"upb/workers/{asked.answer.workerId}/tasks"]
    assert len(tap.messages) > 5  # register, status, logs, results: the tap saw the whole run
    assert lines and [line for line in lines if "LEAKCHECK" in line] == []
    async with httpx.AsyncClient(base_url=cluster.web_url, headers=cluster.operator_headers) as http:
        for path in ("/api/status", "/metrics", "/healthz"):
            assert KEY not in (await http.get(path)).text
