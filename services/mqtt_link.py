"""One MQTT connection kept up with backoff, shared by the master and the worker."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import aiomqtt

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0


def disable_nagle(client: aiomqtt.Client) -> None:
    """Send small MQTT packets at once: paho leaves Nagle's algorithm on, which with delayed ACKs
    holds a task or status message back for up to 40 ms."""
    sock = client._client.socket()  # aiomqtt exposes the paho client only privately
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttLink:
    """Connects with `make_client`, runs `on_connect` (subscribe, announce), hands every message to
    `on_message`, and reconnects with exponential backoff when the broker goes away."""

    def __init__(
        self,
        make_client: Callable[[], aiomqtt.Client],
        on_connect: Callable[[aiomqtt.Client], Awaitable[None]],
        on_message: Callable[[str, bytes], Awaitable[None]],
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._make_client = make_client
        self._on_connect = on_connect
        self._on_message = on_message
        self._on_lost = on_lost
        self._pending: set[asyncio.Task[None]] = set()
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish without waiting for the broker's acknowledgement; failures are logged."""
        client = self.client
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
        """Forever: connect, set up, read messages; reconnect with backoff."""
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                async with self._make_client() as client:
                    disable_nagle(client)
                    self.client = client
                    await self._on_connect(client)
                    self.connected.set()
                    backoff = FIRST_BACKOFF_S
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, (bytes, bytearray)) else b""
                        try:
                            await self._on_message(str(message.topic), bytes(payload))
                        except Exception:
                            # One bad message must not take the process down.
                            log.exception("error while handling a message on %s", message.topic)
            except aiomqtt.MqttError as e:
                log.warning("MQTT connection lost or refused (%s); retrying in %.1f s", e, backoff)
            finally:
                self.client = None
                self.connected.clear()
                self._on_lost()
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait briefly for publishes still in flight."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=timeout)
