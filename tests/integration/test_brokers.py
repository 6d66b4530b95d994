"""One stateless broker per node (MQTT_BROKERS, issue 20): the master on every broker, workers on any one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from lab.loadgen.client import ChatClient, Exchange
from lab.system import broker
from lab.system.credentials import Credentials
from lab.system.local import LocalCluster
from lab.system.ports import accepts_tcp, free_port
from services.master.brokers import Broker, BrokerFleet
from services.master.settings import MasterSettings
from services.mqtt_link import connection_options
from services.protocol import Topics
from tests.conftest import require_mosquitto
from tests.tls import TlsFiles, make_tls
from tests.unit.test_master_edges import RecordingHandler
from tests.waiting import eventually, wait_until

HOST = "127.0.0.1"


class Mosquitto:
    """A stateless broker of the fleet (no persistence) on a fixed port: with a cluster's users and ACL, or
    anonymous; with TLS or not."""

    def __init__(
        self,
        directory: Path,
        port: int,
        credentials: Credentials | None = None,
        tls: broker.BrokerTls | None = None,
    ) -> None:
        directory.mkdir()
        self.port = port
        self._config = broker.write_config(directory, port, HOST, credentials=credentials, tls=tls)
        self._log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        with self._log.open("ab") as log:
            argv = [str(broker.find_mosquitto()), "-c", str(self._config)]
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: accepts_tcp(HOST, self.port), f"mosquitto on port {self.port}")

    def kill(self) -> None:
        """kill -9, as a node that dies would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[LocalCluster, list[Mosquitto], dict[str, int]]]:
    """The lab's broker and two more, a master on all three, and two workers on each; worker id -> its port."""
    require_mosquitto()
    ports = [free_port(HOST) for _ in range(3)]
    logs = tmp_path / "cluster.log"

    def sink(name: str, line: str) -> None:
        with logs.open("a") as f:
            f.write(f"{name} | {line}\n")

    cluster = LocalCluster(
        workers=0,  # added below, each on its broker (they say so in the master's status once registered)
        work_seconds=0.5,
        web_port=0,
        grpc_port=0,
        mqtt_port=ports[0],
        model_mode="offline",
        log_sink=sink,
        extra_env={
            "MQTT_BROKERS": ",".join(f"{HOST}:{p}" for p in ports),
            "MQTT_KEEPALIVE": "2",
            "RATE_PER_MINUTE": "600",
            "MAX_IN_FLIGHT_PER_SESSION": "100",
        },
    )
    others = [Mosquitto(tmp_path / f"broker-{p}", p, cluster.credentials) for p in ports[1:]]
    try:
        for b in others:
            b.start()
        cluster.start()
        where = {cluster.add_worker(env={"MQTT_PORT": str(port)}): port for port in ports for _ in range(2)}
        yield cluster, others, where
    finally:
        cluster.stop()
        for b in others:
            b.kill()


def answered_once(exchanges: list[Exchange]) -> None:
    failed = [(e.query, e.answer) for e in exchanges if e.answer is None or e.answer.error]
    assert not failed, failed
    assert all(len(e.answers) == 1 for e in exchanges), [e.answers for e in exchanges if len(e.answers) != 1]


async def presence(cluster: LocalCluster, port: int) -> dict[str, object]:
    """The master's retained presence on the broker at `port`, read as the lab's observer."""
    user, password = cluster.credentials.login("observer")
    async with aiomqtt.Client(HOST, port, username=user, password=password) as client:
        await client.subscribe(Topics().master_status, qos=1)
        message = await asyncio.wait_for(anext(client.messages), 5)
    assert message.retain and isinstance(message.payload, bytes)
    return dict(json.loads(message.payload))


async def test_workers_on_every_broker_answer_and_the_presence_is_on_each(
    fleet: tuple[LocalCluster, list[Mosquitto], dict[str, int]],
) -> None:
    cluster, _, where = fleet
    for port in sorted(set(where.values())):
        seen = await presence(cluster, port)
        assert seen["status"] == "online" and seen["grpc_endpoint"] == cluster.grpc_endpoint
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"through any broker {i}") for i in range(18)]
        await user.wait_answers(18, timeout=60)
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
    answered_once(asked)
    by_port = {where[e.answer.workerId] for e in asked if e.answer}
    assert by_port == set(where.values())  # tasks went out through each of the three brokers
    assert cluster.status_report().mqtt_connected


async def test_a_broker_killed_loses_nothing_and_its_workers_come_back_with_it(
    fleet: tuple[LocalCluster, list[Mosquitto], dict[str, int]],
) -> None:
    cluster, others, where = fleet
    victim = others[0]
    stranded = {w for w, port in where.items() if port == victim.port}
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"through a broker's death {i}") for i in range(12)]
        await eventually(lambda: any(e.worker_id in stranded for e in asked), "a task sent through the victim")
        victim.kill()
        await user.wait_answers(12, timeout=60)
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
        answered_once(asked)

        # The master tells its workers offline (their broker cannot say it), and the others answer alone.
        def offline() -> bool:
            states = {w.worker_id: w.state for w in cluster.status_report().workers}
            return all(states.get(w) == "offline" for w in stranded)

        await eventually(offline, "the dead broker's workers marked offline", timeout=10)
        during = [await user.ask(f"while a broker is down {i}") for i in range(6)]
        await user.wait_answers(18, timeout=60)
        answered_once(during)
        assert not {e.answer.workerId for e in during if e.answer} & stranded

        # The broker comes back on its port (a new task on that node): its workers and the master reconnect.
        victim.start()

        def back() -> bool:
            states = {w.worker_id: w.state for w in cluster.status_report().workers}
            return all(states.get(w) == "idle" for w in stranded)

        await eventually(back, "the workers of the restarted broker registered again", timeout=30)
        after = [await user.ask(f"after the broker is back {i}") for i in range(12)]
        await user.wait_answers(30, timeout=60)
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
    answered_once(after)
    assert {e.answer.workerId for e in after if e.answer} & stranded
    assert (await presence(cluster, victim.port))["status"] == "online"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, TlsFiles]]:
    """A TLS broker on 127.0.0.1 whose certificate is valid for `localhost` (and 127.0.0.2), not 127.0.0.1."""
    require_mosquitto()
    files = make_tls(tmp_path, host="127.0.0.2")
    mosquitto = Mosquitto(tmp_path / "broker", free_port(HOST), tls=broker.BrokerTls(files.ca, files.cert, files.key))
    try:
        mosquitto.start()
        yield mosquitto.port, files
    finally:
        mosquitto.kill()


async def test_tls_checks_the_brokers_name_while_connecting_to_its_address(tls_broker: tuple[int, TlsFiles]) -> None:
    port, files = tls_broker
    env = {"MQTT_BROKERS": f"localhost:{port}", "MQTT_TLS_CA": str(files.ca), "GRPC_ENDPOINT": "master:50051"}
    fleet = BrokerFleet(MasterSettings.from_env(env))
    fleet.bind(RecordingHandler())
    running = asyncio.create_task(fleet.run())
    try:
        await eventually(fleet.connected.is_set, "connected to localhost's 127.0.0.1, verified as localhost")
        assert [link.broker for link in fleet.links.values()] == [Broker("localhost", HOST, port)]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    options = connection_options(None, None, str(files.ca))
    with pytest.raises(aiomqtt.MqttError):  # what the address alone would have checked
        async with aiomqtt.Client(HOST, port, **options):
            pass
    async with aiomqtt.Client("localhost", port, **options) as client:
        await client.subscribe(Topics().master_status, qos=1)
        message = await asyncio.wait_for(anext(client.messages), 5)
    assert isinstance(message.payload, bytes) and json.loads(message.payload)["grpc_endpoint"] == "master:50051"
