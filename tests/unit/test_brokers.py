"""Unit tests of the master's broker fleet (MQTT_BROKERS): its setting, and where each message goes."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from services.master import broker_log
from services.master.brokers import Broker, BrokerFleet, BrokerLink, Relay, named_tls_context, parse_brokers
from services.master.settings import MasterSettings
from services.protocol import RegisterMessage, StatusMessage, Topics
from tests.tls import make_tls
from tests.unit.test_master_edges import RecordingHandler

TOPICS = Topics()


class Downs(RecordingHandler):
    def __init__(self) -> None:
        super().__init__()
        self.ups = self.downs = 0

    async def mqtt_up(self) -> None:
        self.ups += 1

    def mqtt_down(self) -> None:
        self.downs += 1


Sent = list[tuple[str, str, bool]]  # (link's address, topic, retain)


def fleet_of(count: int) -> tuple[BrokerFleet, list[BrokerLink], Downs, Sent]:
    """A fleet with `count` links (not running: no sockets), each recording what it is asked to publish."""
    settings = MasterSettings.from_env({"MQTT_BROKERS": "mosquitto:1883"})
    fleet, handler, sent = BrokerFleet(settings), Downs(), []
    fleet.bind(handler)
    links = []
    for i in range(count):
        link = BrokerLink(settings, Broker("mosquitto", f"10.0.0.{i + 1}", 1883), None)
        link.bind(Relay(fleet, link))

        def publish(
            topic: str, payload: bytes, qos: int = 1, retain: bool = False, on_failure: object = None, a: int = i
        ) -> None:
            sent.append((f"10.0.0.{a + 1}", topic, retain))

        link.publish = publish  # type: ignore[method-assign]
        fleet.links[(link.broker.address, 1883)] = link
        links.append(link)
    return fleet, links, handler, sent


def register(worker_id: str) -> RegisterMessage:
    return RegisterMessage(worker_id=worker_id, language="python", status="idle", timestamp=1)


def test_brokers_are_read_and_validated() -> None:
    s = MasterSettings.from_env({"MQTT_BROKERS": "mosquitto:1883, 10.0.0.7:8883"})
    assert s.mqtt_brokers == ("mosquitto:1883", "10.0.0.7:8883")
    assert parse_brokers(s.mqtt_brokers) == [("mosquitto", 1883), ("10.0.0.7", 8883)]
    assert MasterSettings.from_env({}).mqtt_brokers == ()  # the one broker of MQTT_HOST:MQTT_PORT


@pytest.mark.parametrize("value", ["mosquitto", "mqtt://mosquitto:1883", "mosquitto:0", "mosquitto:70000", ":1883"])
def test_a_bad_broker_names_its_variable(value: str) -> None:
    with pytest.raises(ValueError, match="MQTT_BROKERS holds host:port items"):
        MasterSettings.from_env({"MQTT_BROKERS": value})


async def test_a_task_goes_through_the_link_its_worker_was_last_heard_on() -> None:
    fleet, (a, b), handler, sent = fleet_of(2)
    a.connected.set()
    b.connected.set()
    await a.handler.on_register(register("python-worker-1"))
    await b.handler.on_status(StatusMessage(worker_id="python-worker-2", status="idle"))
    fleet.publish(TOPICS.tasks("python-worker-1"), b"{}")
    fleet.publish(TOPICS.tasks("python-worker-2"), b"{}")
    await a.handler.on_status(StatusMessage(worker_id="python-worker-2", status="busy"))  # it moved
    fleet.publish(TOPICS.tasks("python-worker-2"), b"{}")
    assert sent == [
        ("10.0.0.1", TOPICS.tasks("python-worker-1"), False),
        ("10.0.0.2", TOPICS.tasks("python-worker-2"), False),
        ("10.0.0.1", TOPICS.tasks("python-worker-2"), False),
    ]
    assert len(handler.got) == 3  # each passed on to the master


async def test_everything_else_goes_to_every_connected_link() -> None:
    fleet, (a, _, c), _, sent = fleet_of(3)
    a.connected.set()
    c.connected.set()
    fleet.publish(TOPICS.master_status, b"{}", retain=True)
    fleet.publish(TOPICS.logs, b"{}", qos=0)
    assert sent == [
        ("10.0.0.1", TOPICS.master_status, True),
        ("10.0.0.3", TOPICS.master_status, True),
        ("10.0.0.1", TOPICS.logs, False),
        ("10.0.0.3", TOPICS.logs, False),
    ]


async def test_a_task_without_a_way_fails_soon_not_inside_the_call() -> None:
    fleet, (a, _), _, sent = fleet_of(2)
    await a.handler.on_register(register("python-worker-1"))  # heard on a, which is down now
    failed: list[str] = []
    fleet.publish(TOPICS.tasks("python-worker-1"), b"{}", on_failure=lambda: failed.append("down"))
    fleet.publish(TOPICS.tasks("python-worker-9"), b"{}", on_failure=lambda: failed.append("unknown"))
    assert failed == [] and sent == []
    await asyncio.sleep(0)
    assert failed == ["down", "unknown"]


async def test_a_stale_last_will_from_a_broker_the_worker_left_is_ignored() -> None:
    fleet, (a, b), handler, _ = fleet_of(2)
    await a.handler.on_register(register("python-worker-1"))
    await b.handler.on_register(register("python-worker-1"))  # reconnected through b
    await a.handler.on_status(StatusMessage(worker_id="python-worker-1", status="offline"))  # a's Will, late
    assert [type(m).__name__ for m in handler.got] == ["RegisterMessage", "RegisterMessage"]
    assert fleet.routes["python-worker-1"] is b
    await b.handler.on_status(StatusMessage(worker_id="python-worker-1", status="offline"))
    assert isinstance(handler.got[-1], StatusMessage) and handler.got[-1].status == "offline"
    assert "python-worker-1" not in fleet.routes  # its tasks have no way until it registers again


async def test_a_baseline_worker_is_reached_where_it_subscribed() -> None:
    fleet, (_, b), handler, _ = fleet_of(2)
    await b.handler.on_broker_event(broker_log.Subscribed("client-7", "python-worker-3"))
    assert fleet.routes["python-worker-3"] is b and handler.got == [
        broker_log.Subscribed("client-7", "python-worker-3")
    ]


async def test_a_lost_link_takes_its_workers_offline_and_the_last_one_holds_assignments() -> None:
    fleet, (a, b), handler, _ = fleet_of(2)
    await a.handler.mqtt_up()
    a.connected.set()
    b.connected.set()
    assert fleet.connected.is_set() and handler.ups == 1
    await a.handler.on_register(register("python-worker-1"))
    await b.handler.on_register(register("python-worker-2"))
    a.connected.clear()
    a.handler.mqtt_down()
    await asyncio.sleep(0)
    last = handler.got[-1]
    assert isinstance(last, StatusMessage) and (last.worker_id, last.status) == ("python-worker-1", "offline")
    assert "python-worker-1" not in fleet.routes and fleet.connected.is_set() and handler.downs == 0
    b.connected.clear()
    b.handler.mqtt_down()
    await asyncio.sleep(0)
    assert not fleet.connected.is_set() and handler.downs == 1
    last = handler.got[-1]
    assert isinstance(last, StatusMessage) and (last.worker_id, last.status) == ("python-worker-2", "offline")


async def test_new_addresses_get_a_link_and_vanished_ones_lose_theirs(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    async def run(self: BrokerLink) -> None:  # no connection: only what the fleet starts and stops
        ran.append(self.broker.address)
        await asyncio.Event().wait()

    monkeypatch.setattr(BrokerLink, "run", run)
    fleet = BrokerFleet(MasterSettings.from_env({"MQTT_BROKERS": "mosquitto:1883"}))
    fleet.bind(Downs())
    fleet.update([Broker("mosquitto", "10.0.0.1", 1883), Broker("mosquitto", "10.0.0.2", 1883)])
    await asyncio.sleep(0)
    first = fleet.links[("10.0.0.1", 1883)]
    fleet.update([Broker("mosquitto", "10.0.0.1", 1883), Broker("mosquitto", "10.0.0.3", 1883)])
    await asyncio.sleep(0)
    assert sorted(fleet.links) == [("10.0.0.1", 1883), ("10.0.0.3", 1883)]
    assert fleet.links[("10.0.0.1", 1883)] is first and ran == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    fleet.update([])
    await asyncio.sleep(0)
    assert fleet.links == {}


def test_tls_verifies_the_brokers_name_not_the_address(tmp_path: Path) -> None:
    files = make_tls(tmp_path)
    context = named_tls_context(str(files.ca), "mosquitto")
    assert context.server_name == "mosquitto" and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    settings = MasterSettings.from_env({"MQTT_BROKERS": "mosquitto:8883", "MQTT_TLS_CA": str(files.ca)})
    link = BrokerLink(settings, Broker("mosquitto", "10.0.0.1", 8883), None)
    pinned = link._connection_options()["tls_context"]
    assert isinstance(pinned, ssl.SSLContext) and getattr(pinned, "server_name", None) == "mosquitto"


async def test_every_address_of_every_name_and_a_failed_lookup_keeps_its_links(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict[str, list[str] | OSError] = {"mosquitto": ["10.0.0.1", "10.0.0.2"], "10.0.0.9": ["10.0.0.9"]}

    async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        found = answers[host]
        if isinstance(found, OSError):
            raise found
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in found]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    fleet, _, _, _ = fleet_of(0)
    fleet._brokers = parse_brokers(("mosquitto:1883", "10.0.0.9:1884"))
    first = await fleet.resolve()
    assert first == [
        Broker("mosquitto", "10.0.0.1", 1883),
        Broker("mosquitto", "10.0.0.2", 1883),
        Broker("10.0.0.9", "10.0.0.9", 1884),
    ]
    for broker in first[:1]:  # as if update() had started the links of the first lookup
        fleet.links[(broker.address, broker.port)] = BrokerLink(fleet._settings, broker, None)
    answers["mosquitto"] = socket.gaierror("Temporary failure in name resolution")
    assert await fleet.resolve() == [Broker("mosquitto", "10.0.0.1", 1883), Broker("10.0.0.9", "10.0.0.9", 1884)]
