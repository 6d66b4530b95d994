"""The worker's gRPC edge: sends a result to the master, retrying with backoff."""

from __future__ import annotations

import asyncio
import logging
import random

import grpc

from services.protocol.rpc import pb, pb_grpc

log = logging.getLogger(__name__)

# Failures worth retrying: the master is restarting, overloaded or briefly unreachable.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}
CALL_TIMEOUT_S = 10.0


class CallbackError(RuntimeError):
    """The result could not be delivered to the master."""


class ResultSender:
    """One channel per master endpoint, reused across results."""

    def __init__(
        self, retries: int = 6, base_delay_s: float = 0.2, max_delay_s: float = 5.0, tls_ca: str | None = None
    ) -> None:
        self._retries = retries
        self._credentials: grpc.ChannelCredentials | None = None
        if tls_ca:
            with open(tls_ca, "rb") as f:
                self._credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        self._base = base_delay_s
        self._max = max_delay_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, endpoint: str) -> pb_grpc.WorkerCallbackStub:
        channel = self._channels.get(endpoint)
        if channel is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(endpoint, self._credentials)
            else:
                channel = grpc.aio.insecure_channel(endpoint)
            self._channels[endpoint] = channel
        return pb_grpc.WorkerCallbackStub(channel)  # type: ignore[no-untyped-call]

    def prepare(self, endpoint: str) -> None:
        """Start connecting to `endpoint` now, so the first result does not pay for the handshake."""
        channel = self._channels.get(endpoint)
        if channel is None:
            self._stub(endpoint)
            channel = self._channels[endpoint]
        channel.get_state(try_to_connect=True)

    async def send(self, endpoint: str, result: pb.TaskResult) -> pb.ResultAck:
        """Deliver `result`; retry transient failures with jittered exponential backoff."""
        delay = self._base
        for attempt in range(1, self._retries + 2):
            try:
                ack: pb.ResultAck = await self._stub(endpoint).SendResult(result, timeout=CALL_TIMEOUT_S)
                return ack
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRYABLE or attempt > self._retries:
                    raise CallbackError(
                        f"master at {endpoint} did not take the result: {e.code().name} {e.details()}"
                    ) from None
                log.warning(
                    "result to %s failed (%s), retry %d/%d in %.1f s",
                    endpoint,
                    e.code().name,
                    attempt,
                    self._retries,
                    delay,
                )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(self._max, delay * 2)
        raise CallbackError("unreachable")  # pragma: no cover - the loop returns or raises

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
