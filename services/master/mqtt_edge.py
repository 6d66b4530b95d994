"""The master's MQTT edge: subscribes to the workers' topics, decodes what arrives into messages for the
master, and announces the master's presence."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import aiomqtt

from services.master import broker_log
from services.master.settings import MasterSettings
from services.mqtt_link import MqttLink, connection_options
from services.protocol import (
    DecodeError,
    MasterPresence,
    RegisterMessage,
    StatusMessage,
    Topics,
    decode,
    encode,
    now_ms,
)

log = logging.getLogger(__name__)


class WorkerEvents(Protocol):
    """What the MQTT edge tells the master (`Master` is one)."""

    async def on_register(self, reg: RegisterMessage) -> None: ...
    async def on_status(self, status: StatusMessage) -> None: ...
    async def on_broker_event(self, event: broker_log.Subscribed | broker_log.Disconnected) -> None: ...
    def bad_message(self, source: str) -> None: ...
    async def mqtt_up(self) -> None: ...
    def mqtt_down(self) -> None: ...


class MqttEdge(MqttLink):
    """The master's connection: register and status in, tasks, logs, results and presence out.

    Built before the master (which publishes through it); `bind` names the master before `run`."""

    def __init__(self, settings: MasterSettings, epoch: int | None = None) -> None:
        """`epoch`: the leader's, in its presence (standby masters), so that workers ignore an older leader's."""
        self._settings = settings
        self._epoch = epoch
        self._host, self._port = settings.mqtt_host, settings.mqtt_port
        self._topics = Topics(settings.topic_prefix)
        self._grpc_endpoint = settings.advertised_grpc_endpoint
        self._handler: WorkerEvents | None = None
        self._clearing: set[asyncio.Task[None]] = set()
        super().__init__(self._new_client, self._announce, self._receive, on_lost=self._lost, on_ready=self._ready)

    def bind(self, handler: WorkerEvents) -> None:
        """Hand what arrives from now on to `handler`."""
        self._handler = handler

    @property
    def handler(self) -> WorkerEvents:
        """The bound handler."""
        if self._handler is None:
            raise RuntimeError("MqttEdge is not bound to a master: call bind() before run()")
        return self._handler

    async def _receive(self, topic: str, payload: bytes) -> None:
        if topic in broker_log.LOG_TOPICS:
            event = broker_log.parse(topic, payload, self._topics)
            if event is not None:
                await self.handler.on_broker_event(event)
            return
        try:
            message = self._decode(topic, payload)
        except DecodeError as e:
            self.handler.bad_message("mqtt")
            log.warning("ignored a bad message on %s: %s", topic, e)
            return
        if isinstance(message, RegisterMessage):
            await self.handler.on_register(message)
        elif isinstance(message, StatusMessage):
            await self.handler.on_status(message)

    def _decode(self, topic: str, payload: bytes) -> RegisterMessage | StatusMessage | None:
        """The message on one of the subscribed topics (None: a topic the master does not read)."""
        if topic == self._topics.register:
            return decode(RegisterMessage, payload)
        if topic == self._topics.status:
            return decode(StatusMessage, payload)
        return None

    async def _ready(self) -> None:
        await self.handler.mqtt_up()

    def _lost(self) -> None:
        if self._handler is not None:
            self._handler.mqtt_down()

    def _new_client(self) -> aiomqtt.Client:
        s = self._settings
        offline = encode(MasterPresence(status="offline", grpc_endpoint=self._grpc_endpoint, epoch=self._epoch))
        return aiomqtt.Client(
            self._host,
            self._port,
            identifier=f"master-{now_ms()}",
            keepalive=s.mqtt_keepalive,
            will=aiomqtt.Will(self._topics.master_status, offline, qos=1, retain=True),
            max_queued_outgoing_messages=0,
            max_inflight_messages=1000,
            **self._connection_options(),
        )

    def _connection_options(self) -> dict[str, Any]:
        """Credentials and TLS for every connection to the broker (services.master.brokers pins TLS's name)."""
        s = self._settings
        return connection_options(s.mqtt_username, s.mqtt_password, s.mqtt_tls_ca)

    def clear_session(self, client_id: str) -> None:
        """Discard the broker's session of `client_id` (a worker gone for good), without waiting: a clean-session
        connection under its id replaces the persistent one, and the task messages queued there, which carry
        users' keys, go with it instead of staying in the broker's persistence until the session expires."""
        task = asyncio.ensure_future(self._clear_session(client_id))
        self._clearing.add(task)
        task.add_done_callback(self._clearing.discard)

    async def _clear_session(self, client_id: str) -> None:
        options = self._connection_options()
        try:
            async with aiomqtt.Client(
                self._host, self._port, identifier=client_id, clean_session=True, keepalive=5, **options
            ):
                pass
        except aiomqtt.MqttError as e:
            log.warning("could not clear the broker session of %s: %s", client_id, e)

    async def _announce(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(self._topics.register, 1), (self._topics.status, 1)])
        if self._settings.allow_baseline_workers:
            # Baseline workers set no Last Will: the broker's log says when their connection closes
            # (broker_log). A broker that does not publish its log sends nothing here; leases still hold.
            await client.subscribe([(topic, 1) for topic in broker_log.LOG_TOPICS])
        online = MasterPresence(
            status="online",
            timestamp=now_ms(),
            grpc_endpoint=self._grpc_endpoint,
            task_messages=None if self._settings.task_messages else False,
            epoch=self._epoch,
        )
        await client.publish(self._topics.master_status, encode(online), qos=1, retain=True)
        log.info("connected to MQTT at %s:%s", self._host, self._port)
