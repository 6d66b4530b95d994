"""One MQTT connection kept up with backoff, shared by the master and the worker."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
# aiomqtt logs a warning on every publish while more than `pending_calls_threshold` (10) publishes await
# their PUBACK, after counting them into a list. A master with hundreds of workers always has that many: at
# 1,000 workers the warnings cost ~8 % of its CPU (py-spy), and say nothing a metric would not.
PENDING_CALLS_WARNING = 1_000_000


def connection_options(username: str | None, password: str | None, tls_ca: str | None) -> dict[str, Any]:
    """aiomqtt.Client keyword arguments for credentials and, with a CA file, TLS that verifies the broker."""
    options: dict[str, Any] = {}
    if username:
        options.update(username=username, password=password)
    if tls_ca:
        options["tls_context"] = ssl.create_default_context(cafile=tls_ca)
    return options


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
        on_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._make_client = make_client
        self._on_connect = on_connect
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_ready = on_ready
        self._pending: set[asyncio.Task[None]] = set()
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Publish without waiting for the broker's acknowledgement; on failure call `on_failure`
        (soon, never from inside this call) or, without one, log it."""
        client = self.client
        loop = asyncio.get_running_loop()
        if client is None:
            if on_failure is not None:
                loop.call_soon(on_failure)
            elif qos > 0:
                log.warning("not connected to MQTT: dropped a message for %s", topic)
            return
        task = loop.create_task(self._publish(client, topic, payload, qos, retain, on_failure))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, for the messages published so far to be sent."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)

    async def _publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        on_failure: Callable[[], None] | None,
    ) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=10)
        except aiomqtt.MqttError as e:
            log.warning("could not publish on %s: %s", topic, e)
            if on_failure is not None:
                on_failure()

    async def run(self) -> None:
        """Forever: connect, set up, read messages; reconnect with backoff."""
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                async with self._make_client() as client:
                    disable_nagle(client)
                    client.pending_calls_threshold = PENDING_CALLS_WARNING
                    self.client = client
                    await self._on_connect(client)
                    self.connected.set()
                    if self._on_ready is not None:
                        await self._on_ready()
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
