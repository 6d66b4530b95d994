"""The master's MQTT edge: subscribes to the workers' topics and announces the master's presence."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from services.master.settings import MasterSettings
from services.mqtt_link import MqttLink, connection_options
from services.protocol import MasterPresence, Topics, encode, now_ms

log = logging.getLogger(__name__)


class MqttEdge(MqttLink):
    """The master's connection: register and status in, tasks, logs, results and presence out."""

    def __init__(
        self,
        settings: MasterSettings,
        on_message: Callable[[str, bytes], Awaitable[None]],
        on_ready: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._host, self._port = settings.mqtt_host, settings.mqtt_port
        self._topics = Topics(settings.topic_prefix)
        self._grpc_endpoint = settings.advertised_grpc_endpoint
        super().__init__(self._new_client, self._announce, on_message, on_lost=on_lost, on_ready=on_ready)

    def _new_client(self) -> aiomqtt.Client:
        s = self._settings
        offline = encode(MasterPresence(status="offline", grpc_endpoint=self._grpc_endpoint))
        return aiomqtt.Client(
            self._host,
            self._port,
            identifier=f"master-{now_ms()}",
            keepalive=s.mqtt_keepalive,
            will=aiomqtt.Will(self._topics.master_status, offline, qos=1, retain=True),
            max_queued_outgoing_messages=0,
            max_inflight_messages=1000,
            **connection_options(s.mqtt_username, s.mqtt_password, s.mqtt_tls_ca),
        )

    async def _announce(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(self._topics.register, 1), (self._topics.status, 1)])
        online = MasterPresence(status="online", timestamp=now_ms(), grpc_endpoint=self._grpc_endpoint)
        await client.publish(self._topics.master_status, encode(online), qos=1, retain=True)
        log.info("connected to MQTT at %s:%s", self._host, self._port)
