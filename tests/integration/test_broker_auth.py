"""The broker's password file and ACL with a real Mosquitto: who may connect, publish and read what.

Mosquitto drops a publish the ACL denies without telling an MQTT 3.1.1 client, and does not deliver a message
to a client that may not read it. So each "not delivered" check is followed by a sentinel message that the
same receiver does get: Mosquitto handles messages one at a time and delivers them to a subscriber in order,
so once the sentinel is there, a message sent before it would be there too.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from lab.system import broker
from lab.system.credentials import Credentials, User
from lab.system.ports import accepts_tcp, free_port
from lab.system.procs import ManagedProcess
from services.protocol.topics import Topics
from tests.conftest import require_mosquitto

pytestmark = pytest.mark.integration

PREFIX = "acl-test"  # not the default, so the template's placeholder is known to be filled in
TOPICS = Topics(PREFIX)
TIMEOUT_S = 5.0


class Broker:
    """A real Mosquitto with the lab's password file and ACL, on a free port."""

    def __init__(self, directory: Path) -> None:
        self.credentials = Credentials()
        self.port = free_port()
        conf = broker.write_config(directory, self.port, topic_prefix=PREFIX, credentials=self.credentials)
        self.lines: list[str] = []
        self.proc = ManagedProcess(
            "mosquitto",
            [str(broker.find_mosquitto()), "-c", str(conf)],
            env={},
            cwd=directory,
            sink=lambda name, line: self.lines.append(line),
        )
        for _ in range(100):
            if accepts_tcp("127.0.0.1", self.port) or not self.proc.alive:
                break
            self.proc.wait(0.05)
        assert accepts_tcp("127.0.0.1", self.port), "\n".join(self.lines)

    def login(self, user: User) -> tuple[str, str]:
        return self.credentials.login(user)


class Peer:
    """One MQTT 3.1.1 client (paho 2.x) that records its CONNACK and every message it receives."""

    def __init__(
        self, port: int, login: tuple[str, str] | None, client_id: str | None = None, clean_session: bool = True
    ) -> None:
        client_id = client_id or f"peer-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        if login is not None:
            self.client.username_pw_set(*login)
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connacks: queue.Queue[ReasonCode] = queue.Queue()
        self._subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        self._connacks.put(rc)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, codes: list[ReasonCode], props: object
    ) -> None:
        self._subacks.put(codes)

    def connack(self) -> ReasonCode:
        """The broker's answer to the connection."""
        return self._connacks.get(timeout=TIMEOUT_S)

    def ready(self) -> Peer:
        """Fail unless the broker accepted the connection."""
        rc = self.connack()
        assert not rc.is_failure, f"connection refused: {rc}"
        return self

    def subscribe(self, *topics: str) -> None:
        """Subscribe at QoS 1 and wait for the broker's SUBACK."""
        self.client.subscribe([(t, 1) for t in topics])
        self._subacks.get(timeout=TIMEOUT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the PUBACK (the broker acknowledges denied publishes too)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published()

    def received_until(self, sentinel: bytes) -> list[tuple[str, bytes]]:
        """Every message received up to and including the one carrying `sentinel`."""
        seen: list[tuple[str, bytes]] = []
        while True:
            try:
                message = self.messages.get(timeout=TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"sentinel {sentinel!r} never arrived; received {seen}")
            seen.append(message)
            if message[1] == sentinel:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    require_mosquitto()
    running = Broker(tmp_path)
    yield running
    running.proc.stop()


class Connect(Protocol):
    def __call__(self, user: User | None, client_id: str | None = None, password: str | None = None) -> Peer: ...


@pytest.fixture
def connect(mosquitto: Broker) -> Iterator[Connect]:
    """Connect peers as a user (None: anonymous), by default with its right password; all closed at the end."""
    peers: list[Peer] = []

    def make(user: User | None, client_id: str | None = None, password: str | None = None) -> Peer:
        login = None
        if user is not None:
            login = (user, mosquitto.credentials.password(user) if password is None else password)
        peer = Peer(mosquitto.port, login, client_id)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def _refused(rc: ReasonCode) -> bool:
    """A CONNACK that refuses for credentials (3.1.1 codes 4 and 5, as paho names them)."""
    return rc.is_failure and str(rc) in ("Bad user name or password", "Not authorized")


# -- connecting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["master", "worker", "observer"])
def test_each_user_is_admitted_with_its_password(connect: Connect, user: User) -> None:
    assert not connect(user).connack().is_failure


def test_anonymous_client_is_refused(connect: Connect, mosquitto: Broker) -> None:
    assert _refused(connect(None).connack())
    # The broker says why in its log (which may reach us a moment after the CONNACK).
    deadline = time.monotonic() + TIMEOUT_S
    while not any("not authorised" in line.lower() for line in mosquitto.lines):
        assert time.monotonic() < deadline, mosquitto.lines
        time.sleep(0.05)


@pytest.mark.parametrize("user", ["master", "worker", "observer"])
def test_wrong_password_is_refused(connect: Connect, user: User) -> None:
    assert _refused(connect(user, password="guessed").connack())


def test_another_users_password_is_refused(connect: Connect, mosquitto: Broker) -> None:
    assert _refused(connect("master", password=mosquitto.credentials.worker).connack())


def test_unknown_user_is_refused(connect: Connect) -> None:
    assert _refused(connect("admin", password="admin").connack())  # type: ignore[arg-type]


# -- what a worker may do ---------------------------------------------------------------------------------


def test_worker_may_publish_register_status_and_logs(connect: Connect) -> None:
    observer = connect("observer").ready()
    observer.subscribe(f"{PREFIX}/#")
    worker = connect("worker", client_id="python-worker-aaaaaa").ready()
    for topic in (TOPICS.register, TOPICS.status, TOPICS.logs):
        worker.publish(topic, f"to {topic}".encode())
    received = observer.received_until(f"to {TOPICS.logs}".encode())
    assert received == [(t, f"to {t}".encode()) for t in (TOPICS.register, TOPICS.status, TOPICS.logs)]


@pytest.mark.parametrize(
    "topic",
    [
        TOPICS.tasks("python-worker-bbbbbb"),  # another worker's task
        TOPICS.tasks("python-worker-aaaaaa"),  # even its own task topic: only the master sends tasks
        TOPICS.results,
        TOPICS.master_status,
        "elsewhere/topic",
    ],
)
def test_worker_publish_outside_its_topics_is_dropped(connect: Connect, topic: str) -> None:
    master = connect("master").ready()
    master.subscribe("#")
    worker = connect("worker", client_id="python-worker-aaaaaa").ready()
    worker.publish(topic, b"forged")
    worker.publish(TOPICS.logs, b"sentinel")
    assert master.received_until(b"sentinel") == [(TOPICS.logs, b"sentinel")]


def test_worker_reads_its_own_task_topic_and_the_master_presence_only(connect: Connect) -> None:
    worker = connect("worker", client_id="python-worker-aaaaaa").ready()
    own, other = TOPICS.tasks("python-worker-aaaaaa"), TOPICS.tasks("python-worker-bbbbbb")
    worker.subscribe(other, f"{PREFIX}/#")
    master = connect("master").ready()
    for topic in (other, TOPICS.results, TOPICS.register, TOPICS.status, TOPICS.logs, TOPICS.master_status):
        master.publish(topic, f"to {topic}".encode())
    master.publish(own, b"sentinel")
    assert worker.received_until(b"sentinel") == [
        (TOPICS.master_status, f"to {TOPICS.master_status}".encode()),
        (own, b"sentinel"),
    ]


def test_client_id_with_a_wildcard_reads_no_task_topic(connect: Connect) -> None:
    # With client id "+" the pattern would read `prefix/workers/+/tasks`; Mosquitto refuses such ids there.
    sneaky = connect("worker", client_id="+").ready()
    sneaky.subscribe(TOPICS.tasks("+"), f"{PREFIX}/#")
    master = connect("master").ready()
    master.publish(TOPICS.tasks("python-worker-bbbbbb"), b"secret task")
    master.publish(TOPICS.master_status, b"sentinel")
    assert sneaky.received_until(b"sentinel") == [(TOPICS.master_status, b"sentinel")]


# -- the observer and the master ----------------------------------------------------------------------------


def test_observer_reads_everything_but_the_task_messages(connect: Connect) -> None:
    observer = connect("observer").ready()
    observer.subscribe(f"{PREFIX}/#")
    master = connect("master").ready()
    worker = connect("worker", client_id="python-worker-aaaaaa").ready()
    master.publish(TOPICS.tasks("python-worker-aaaaaa"), b"task with a user's key")
    master.publish(TOPICS.results, b"result")
    master.publish(TOPICS.master_status, b"presence")
    worker.publish(TOPICS.register, b"register")
    worker.publish(TOPICS.logs, b"log")
    worker.publish(TOPICS.status, b"sentinel")
    assert observer.received_until(b"sentinel") == [
        (TOPICS.results, b"result"),
        (TOPICS.master_status, b"presence"),
        (TOPICS.register, b"register"),
        (TOPICS.logs, b"log"),
        (TOPICS.status, b"sentinel"),
    ]


@pytest.mark.parametrize(
    "topic", [TOPICS.register, TOPICS.status, TOPICS.logs, TOPICS.tasks("python-worker-aaaaaa"), TOPICS.results]
)
def test_observer_publish_is_dropped(connect: Connect, topic: str) -> None:
    master = connect("master").ready()
    master.subscribe("#")
    observer = connect("observer").ready()
    observer.publish(topic, b"forged")
    master.publish(TOPICS.logs, b"sentinel")
    assert master.received_until(b"sentinel") == [(TOPICS.logs, b"sentinel")]


def test_master_may_not_leave_the_prefix(connect: Connect) -> None:
    master = connect("master").ready()
    master.subscribe("#")
    master.publish("elsewhere/topic", b"outside")
    master.publish(TOPICS.logs, b"sentinel")
    assert master.received_until(b"sentinel") == [(TOPICS.logs, b"sentinel")]
