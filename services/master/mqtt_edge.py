"""The master's MQTT edge: one connection kept up with backoff, subscriptions, non-blocking publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from services.mqtt_socket import disable_nagle
from services.protocol import MasterPresence, Topics, encode, now_ms

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0


class MqttEdge:
    """Keeps the master connected to the broker and hands every message to `on_message`."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: Topics,
        grpc_endpoint: str,
        on_message: Callable[[str, bytes], Awaitable[None]],
    ) -> None:
        self._host, self._port = host, port
        self._topics = topics
        self._grpc_endpoint = grpc_endpoint
        self._on_message = on_message
        self._client: aiomqtt.Client | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish without waiting for the broker's acknowledgement; failures are logged."""
        client = self._client
        if client is None:
            log.warning("not connected to MQTT: dropped a message for %s", topic)
            return
        task = asyncio.get_running_loop().create_task(self._publish(client, topic, payload, qos, retain))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as e:
            log.warning("could not publish on %s: %s", topic, e)

    async def run(self) -> None:
        """Forever: connect, subscribe, announce presence, read messages; reconnect with backoff."""
        backoff = 0.5
        offline = encode(MasterPresence(status="offline", grpc_endpoint=self._grpc_endpoint))
        while True:
            try:
                async with aiomqtt.Client(
                    self._host,
                    self._port,
                    identifier=f"master-{now_ms()}",
                    keepalive=15,
                    will=aiomqtt.Will(self._topics.master_status, offline, qos=1, retain=True),
                    max_queued_outgoing_messages=0,
                    max_inflight_messages=1000,
                ) as client:
                    disable_nagle(client)
                    self._client = client
                    await client.subscribe([(self._topics.register, 1), (self._topics.status, 1)])
                    online = MasterPresence(status="online", timestamp=now_ms(), grpc_endpoint=self._grpc_endpoint)
                    await client.publish(self._topics.master_status, encode(online), qos=1, retain=True)
                    self.connected.set()
                    backoff = 0.5
                    log.info("connected to MQTT at %s:%s", self._host, self._port)
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        try:
                            await self._on_message(str(message.topic), payload)
                        except Exception:
                            # One bad message must not take the master down.
                            log.exception("error while handling a message on %s", message.topic)
            except aiomqtt.MqttError as e:
                log.warning("MQTT connection lost or refused (%s); retrying in %.1f s", e, backoff)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def close(self, timeout: float = 2.0) -> None:
        """Wait briefly for publishes still in flight."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=timeout)
