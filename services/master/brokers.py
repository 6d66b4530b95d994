"""The master's MQTT edge over several brokers (MQTT_BROKERS): one stateless broker per node, no clustering.

Workers connect to any broker. The master connects to every one, reads the workers' topics and announces its
presence on each, and sends each worker's tasks through the broker that worker was last heard on; everything
else it publishes (presence, logs, results) goes to every broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from services.master import broker_log
from services.master.mqtt_edge import MqttEdge, WorkerEvents
from services.master.settings import MasterSettings
from services.protocol import RegisterMessage, StatusMessage, Topics, now_ms

log = logging.getLogger(__name__)

RESOLVE_EVERY_S = 5.0  # a Swarm service's broker tasks come and go; Docker's DNS follows them


@dataclass(frozen=True)
class Broker:
    """One broker to connect to: the `host` named in MQTT_BROKERS (TLS verifies it), at one of its addresses."""

    host: str
    address: str
    port: int


def parse_brokers(items: tuple[str, ...]) -> list[tuple[str, int]]:
    """MQTT_BROKERS' host:port items (validated by MasterSettings) as (host, port) pairs."""
    pairs = []
    for item in items:
        host, _, port = item.rpartition(":")
        pairs.append((host, int(port)))
    return pairs


class NamedTlsContext(ssl.SSLContext):
    """A client TLS context that verifies the server's certificate against `server_name`, whatever address the
    socket was opened to (paho would check the address it connected to)."""

    server_name = ""

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wrap `sock` as SSLContext does, naming `server_name` as the server's host name."""
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, self.server_name, session
        )


def named_tls_context(ca_file: str, server_name: str) -> NamedTlsContext:
    """What `ssl.create_default_context(cafile=ca_file)` gives, verifying `server_name`."""
    context = NamedTlsContext(ssl.PROTOCOL_TLS_CLIENT)  # certificate and host name required
    context.load_verify_locations(cafile=ca_file)
    context.server_name = server_name
    return context


class BrokerLink(MqttEdge):
    """The master's connection to one broker of the fleet: an MqttEdge at a resolved address."""

    def __init__(self, settings: MasterSettings, broker: Broker, epoch: int | None) -> None:
        super().__init__(settings, epoch)
        self.broker = broker
        self._host, self._port = broker.address, broker.port

    def _connection_options(self) -> dict[str, Any]:
        options = super()._connection_options()
        if self._settings.mqtt_tls_ca:
            # Connected to an address, the certificate is still the name's (MQTT_BROKERS' host).
            options["tls_context"] = named_tls_context(self._settings.mqtt_tls_ca, self.broker.host)
        return options


class Relay:
    """What one link hears, passed on to the master after noting on which link each worker is."""

    def __init__(self, fleet: BrokerFleet, link: BrokerLink) -> None:
        self._fleet = fleet
        self._link = link

    async def on_register(self, reg: RegisterMessage) -> None:
        """A worker registered through this link: its tasks go this way from now on."""
        self._fleet.routes[reg.worker_id] = self._link
        await self._fleet.handler.on_register(reg)

    async def on_status(self, status: StatusMessage) -> None:
        """A worker's status; an `offline` (its Last Will) from a broker it has left since is stale."""
        route = self._fleet.routes.get(status.worker_id)
        if status.status == "offline" and route is not None and route is not self._link:
            # Its old connection's Will can arrive after it registered through another broker.
            log.info("ignored %s's Last Will from a broker it left", status.worker_id)
            return
        if status.status == "offline":
            self._fleet.routes.pop(status.worker_id, None)  # gone from here: no second offline when the link goes
        else:
            self._fleet.routes[status.worker_id] = self._link
        await self._fleet.handler.on_status(status)

    async def on_broker_event(self, event: broker_log.Subscribed | broker_log.Disconnected) -> None:
        """This broker's log: a baseline worker that subscribes to its tasks here is reached here."""
        if isinstance(event, broker_log.Subscribed):
            self._fleet.routes[event.worker_id] = self._link
        await self._fleet.handler.on_broker_event(event)

    def bad_message(self, source: str) -> None:
        """As the master."""
        self._fleet.handler.bad_message(source)

    async def mqtt_up(self) -> None:
        """This link is connected (and has announced the master on its broker)."""
        self._fleet.connected.set()
        await self._fleet.handler.mqtt_up()

    def mqtt_down(self) -> None:
        """This link is down (or did not come up)."""
        self._fleet.link_lost(self._link)


class BrokerFleet:
    """One BrokerLink per address of every broker in MQTT_BROKERS, kept in step with DNS; the master's
    Publisher and MQTT edge, like MqttEdge (`bind`, `run`, `connected`, `publish`, `clear_session`, `drain`)."""

    def __init__(self, settings: MasterSettings, epoch: int | None = None) -> None:
        """`epoch`: the leader's (standby masters), in the presence every link announces."""
        self._settings = settings
        self._epoch = epoch
        self._topics = Topics(settings.topic_prefix)
        self._brokers = parse_brokers(settings.mqtt_brokers)
        self._handler: WorkerEvents | None = None
        self.links: dict[tuple[str, int], BrokerLink] = {}  # by (address, port)
        self._runs: dict[BrokerLink, asyncio.Task[None]] = {}
        self.routes: dict[str, BrokerLink] = {}  # worker id -> the link it was last heard on
        self.connected = asyncio.Event()  # set while at least one link is connected
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False

    def bind(self, handler: WorkerEvents) -> None:
        """Hand what arrives from now on, through any link, to `handler`."""
        self._handler = handler

    @property
    def handler(self) -> WorkerEvents:
        """The bound handler."""
        if self._handler is None:
            raise RuntimeError("BrokerFleet is not bound to a master: call bind() before run()")
        return self._handler

    async def run(self) -> None:
        """Forever: look the brokers up, connect to new addresses and drop vanished ones; every RESOLVE_EVERY_S."""
        try:
            while True:
                self.update(await self.resolve())
                await asyncio.sleep(RESOLVE_EVERY_S)
        finally:
            self._stopping = True  # the links close because the master stops, not because workers went
            for task in self._runs.values():
                task.cancel()
            for task in list(self._runs.values()):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def resolve(self) -> list[Broker]:
        """Every IPv4 address of every broker (for a name that cannot be looked up now, the ones it had)."""
        loop = asyncio.get_running_loop()
        found: list[Broker] = []
        for host, port in self._brokers:
            try:
                infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
            except OSError as e:
                # A DNS hiccup must not cut live connections: the links keep reconnecting on their own.
                log.warning("could not look up the MQTT broker %s: %s; keeping its links", host, e)
                found += [
                    link.broker for link in self.links.values() if (link.broker.host, link.broker.port) == (host, port)
                ]
                continue
            found += [Broker(host, str(info[4][0]), port) for info in infos]
        return found

    def update(self, brokers: list[Broker]) -> None:
        """Start a link for every new address, and stop the links of addresses no longer listed."""
        wanted: dict[tuple[str, int], Broker] = {}
        for b in brokers:
            wanted.setdefault((b.address, b.port), b)  # the first name of an address wins (TLS checks it)
        for key in [k for k in self.links if k not in wanted]:
            link = self.links.pop(key)
            log.info("MQTT broker %s (%s:%s) is gone from DNS: disconnecting", link.broker.host, *key)
            self._runs.pop(link).cancel()  # its run's `finally` reports it lost
        for key, broker in wanted.items():
            if key not in self.links:
                link = self.links[key] = BrokerLink(self._settings, broker, self._epoch)
                link.bind(Relay(self, link))
                self._runs[link] = asyncio.create_task(link.run(), name=f"mqtt {broker.address}:{broker.port}")

    def link_lost(self, link: BrokerLink) -> None:
        """`link` is down: its workers cannot be reached, and with no link left assignments are held."""
        # What the broker would say if it were alive (their Last Wills): without it, the workers of a node
        # that died with its broker would stay idle in the master's eyes, and their tasks wait for leases.
        # A worker that is alive connects to another broker and registers there (or, when only the master's
        # connection dropped, registers again on the presence announced when it is back).
        gone = [worker_id for worker_id, route in self.routes.items() if route is link]
        for worker_id in gone:
            del self.routes[worker_id]
            if self._handler is not None and not self._stopping:
                offline = StatusMessage(worker_id=worker_id, status="offline", timestamp=now_ms())
                self._spawn(self._handler.on_status(offline))
        if not any(other.connected.is_set() for other in self.links.values()):
            self.connected.clear()
            if self._handler is not None:
                self._handler.mqtt_down()

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """A worker's task through the link it is on; anything else through every connected link. Without
        a way (an unknown worker, its link down, no link up) call `on_failure` soon, never inside this call."""
        worker_id = self._topics.worker_id_from_tasks(topic)
        if worker_id is not None:
            route = self.routes.get(worker_id)
            links = [route] if route is not None and route.connected.is_set() else []
        else:
            links = [link for link in self.links.values() if link.connected.is_set()]
        if not links:
            if on_failure is not None:
                asyncio.get_running_loop().call_soon(on_failure)
            elif qos > 0:
                log.warning("no MQTT broker to send %s through: dropped", topic)
            return
        once = _once(on_failure) if on_failure is not None and len(links) > 1 else on_failure
        for link in links:
            link.publish(topic, payload, qos, retain, once)

    def clear_session(self, client_id: str) -> None:
        """Discard `client_id`'s session on every broker: a worker may have left one on each it was on."""
        for link in self.links.values():
            if link.connected.is_set():
                link.clear_session(client_id)

    async def flush(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, for what every link was given so far to be sent."""
        await asyncio.gather(*(link.flush(timeout) for link in self.links.values()))

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait briefly for publishes still in flight on every link."""
        await asyncio.gather(*(link.drain(timeout) for link in self.links.values()))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _once(callback: Callable[[], None]) -> Callable[[], None]:
    """`callback`, called at most once however many links fail."""
    called = False

    def call() -> None:
        nonlocal called
        if not called:
            called = True
            callback()

    return call
