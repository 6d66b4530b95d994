"""Baseline mode (`LocalCluster(baseline=True)`, `lab up --baseline`): the original system's workers join
anonymously next to ours, and can do no more than a baseline worker needs. Off by default."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lab.bench.baseline_worker import BaselineWorker
from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from tests.conftest import ClusterFactory
from tests.waiting import eventually

_QUIET_SECONDS = 1.0


class _Client:
    """A plain paho client (anonymous unless given a login) that records what it receives."""

    def __init__(self, port: int, login: tuple[str, str] | None = None) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.reason: object = None
        self._answered = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self._answered.wait(10), "the broker did not answer the CONNECT"

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        self.reason = rc
        self._answered.set()

    @property
    def accepted(self) -> bool:
        return not self.reason.is_failure  # type: ignore[attr-defined]

    def subscribe(self, topic: str) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5)

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def drain(self, seconds: float = _QUIET_SECONDS) -> list[tuple[str, bytes]]:
        """Everything received within `seconds`."""
        time.sleep(seconds)
        got = []
        while not self.received.empty():
            got.append(self.received.get_nowait())
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _workers(cluster: LocalCluster) -> set[str]:
    return {w["worker_id"] for w in cluster.status()["workers"]}


async def test_an_anonymous_baseline_worker_answers_its_share_next_to_ours(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.3, baseline=True)
    original = BaselineWorker(cluster.mqtt_port, "original-worker-1", cluster.config.topic_prefix, work_seconds=0.3)
    try:
        await eventually(lambda: original.worker_id in _workers(cluster), "the baseline worker registered")
        async with ChatClient(cluster.web_url) as user:
            asked = [await user.ask(f"baseline question {i}", api_key="user-key") for i in range(9)]
            await user.wait_answers(9, timeout=30)
    finally:
        original.close()
    answers = [e.answer for e in asked]
    assert all(a is not None and a.error == "" for a in answers)
    by_worker = {a.workerId for a in answers if a is not None}
    assert by_worker == {original.worker_id, *cluster.worker_ids}
    mine = [a for a in answers if a is not None and a.workerId == original.worker_id]
    assert all(a.response.startswith("baseline answer to: baseline question") for a in mine)
    acks = []
    while not original.acks.empty():
        acks.append(original.acks.get_nowait())
    assert len(acks) == len(mine) and all(ack.success for ack in acks), acks


async def test_anonymous_clients_get_only_what_a_baseline_worker_needs(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.2, baseline=True)
    prefix = cluster.config.topic_prefix
    snoop = _Client(cluster.mqtt_port)
    forger = _Client(cluster.mqtt_port)
    observer = _Client(cluster.mqtt_port, cluster.credentials.login("observer"))
    try:
        assert snoop.accepted and forger.accepted and observer.accepted
        snoop.subscribe(f"{prefix}/#")
        observer.subscribe(f"{prefix}/#")
        # Others' traffic: a registration, statuses, a task and its result, the master's presence.
        extra = cluster.add_worker()
        async with ChatClient(cluster.web_url) as user:
            await user.ask("who reads this?")
            await user.wait_answers(1, timeout=20)
        seen = {topic for topic, _ in snoop.drain()}
        # Only task messages reach an anonymous reader (what the baseline's workers must read): no
        # registrations, statuses, logs, results or master presence.
        assert seen, "the task topics are readable in baseline mode"
        assert all(topic.startswith(f"{prefix}/workers/") and topic.endswith("/tasks") for topic in seen), seen
        observer.drain()
        # What an anonymous client may not publish is dropped: results, the master's presence, tasks.
        forged_task = f"{prefix}/workers/{extra}/tasks"
        for topic in (f"{prefix}/results", f"{prefix}/master/status", forged_task, "elsewhere/x"):
            forger.publish(topic, '{"forged": true}')
        assert [t for t, p in observer.drain() if b"forged" in p] == []
        assert [t for t, p in snoop.drain() if b"forged" in p] == []
        # What it may publish arrives (the observer reads logs).
        forger.publish(f"{prefix}/logs", '{"source": "original", "message": "allowed"}')
        await eventually(
            lambda: any(b"allowed" in p for _, p in list(observer.received.queue)), "an anonymous log line delivered"
        )
    finally:
        for client in (snoop, forger, observer):
            client.close()


async def test_without_baseline_anonymous_clients_are_refused(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.2)
    anonymous = _Client(cluster.mqtt_port)
    try:
        assert not anonymous.accepted
        assert "not authori" in str(anonymous.reason).lower()
    finally:
        anonymous.close()
    assert "ALLOW_BASELINE_WORKERS" not in cluster.config.master_env({})
