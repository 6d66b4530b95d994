"""The worker's gRPC edge: sends a result to the master, retrying with backoff."""

from __future__ import annotations

import asyncio
import collections
import contextlib
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


def stream_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """An error for a result whose stream ended or stalled, handled like a failed call."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class ResultStream:
    """One long-lived `StreamResults` call, opened ahead of use and again after it ends. The master accepts
    the call by sending its initial metadata; results are then written in turn and each gets one ack, in
    the same order."""

    def __init__(self, stub: pb_grpc.WorkerCallbackStub) -> None:
        self._stub = stub
        self._call: grpc.aio.StreamStreamCall[pb.TaskResult, pb.ResultAck] | None = None
        self._waiting: collections.deque[asyncio.Future[pb.ResultAck]] = collections.deque()
        self._accepted = False
        self.unimplemented = False
        """The master answered UNIMPLEMENTED: it has no StreamResults (the original master)."""
        self._reader: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()  # grpc.aio takes one write at a time

    @property
    def ready(self) -> bool:
        """Whether the master has accepted the current call, so that a result sent now is taken at once."""
        return self._accepted and self._call is not None and not self._call.done()

    def open(self) -> grpc.aio.StreamStreamCall[pb.TaskResult, pb.ResultAck]:
        """The open call; a new one when there is none or it has ended."""
        if self._call is None or self._call.done():
            call = self._stub.StreamResults()
            self._call, self._waiting, self._accepted = call, collections.deque(), False
            self._reader = asyncio.create_task(self._read(call, self._waiting), name="result-acks")
        return self._call

    async def send(self, result: pb.TaskResult, timeout: float) -> pb.ResultAck:
        """Write `result` and wait, at most `timeout` seconds, for its ack."""
        async with self._writing:
            call, ack = self.open(), asyncio.get_running_loop().create_future()
            self._waiting.append(ack)
            # A call that has ended refuses the write; its reader then fails `ack` with the call's error.
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.write(result)
        try:
            # Cancels `ack` when it gives up, so that the reader passes over it.
            return await asyncio.wait_for(ack, timeout)
        except asyncio.TimeoutError:
            # The master did not answer in time: start over on a new call (this one may be stuck).
            self.close()
            raise stream_error(grpc.StatusCode.DEADLINE_EXCEEDED, "no ack for the result in time") from None

    def close(self) -> None:
        """End the current call; results still waiting on it fail as UNAVAILABLE (and are sent again)."""
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def _read(
        self,
        call: grpc.aio.StreamStreamCall[pb.TaskResult, pb.ResultAck],
        waiting: collections.deque[asyncio.Future[pb.ResultAck]],
    ) -> None:
        """Note when the master accepts the call, hand each ack to the oldest waiting result, and when the
        call ends, fail those still waiting."""
        error = stream_error(grpc.StatusCode.UNAVAILABLE, "the master closed the result stream")
        try:
            await call.initial_metadata()
            if not call.done() and self._call is call:
                self._accepted = True
            async for ack in call:
                if waiting:
                    future = waiting.popleft()
                    if not future.done():  # its sender may have given up
                        future.set_result(ack)
        except grpc.aio.AioRpcError as e:
            if e.code() is grpc.StatusCode.UNIMPLEMENTED:  # a master that speaks only the baseline (the original)
                log.info("master takes no result streams: one call per result")
                self.unimplemented = True
            # Cancelled here (stalled) or by a master going down: either way, worth sending again.
            cancelled = e.code() is grpc.StatusCode.CANCELLED
            error = (
                stream_error(grpc.StatusCode.UNAVAILABLE, f"result stream cancelled: {e.details()}") if cancelled else e
            )
        except asyncio.CancelledError:
            error = stream_error(grpc.StatusCode.UNAVAILABLE, "the result stream was closed")
            raise
        finally:
            while waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_exception(error)


class ResultSender:
    """One channel and one result stream per master endpoint, reused across results."""

    def __init__(
        self,
        retries: int = 6,
        base_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
        tls_ca: str | None = None,
        stream: bool = True,
    ) -> None:
        """`stream=False`: one SendResult call per result, never a stream (RESULT_STREAM=false)."""
        self._retries = retries
        self._stream_results = stream
        self._credentials: grpc.ChannelCredentials | None = None
        if tls_ca:
            with open(tls_ca, "rb") as f:
                self._credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        self._base = base_delay_s
        self._max = max_delay_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._streams: dict[str, ResultStream] = {}

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
        """Start connecting to `endpoint` and open its result stream now (a task starts), so that the
        result pays for neither: a master busy with other work takes seconds to start a new call."""
        channel = self._channels.get(endpoint)
        if channel is None:
            self._stub(endpoint)
            channel = self._channels[endpoint]
        channel.get_state(try_to_connect=True)
        if self._streams_to(endpoint):
            self._stream(endpoint).open()

    def _streams_to(self, endpoint: str) -> bool:
        """Whether results to `endpoint` go on a stream: unless turned off, or the master has none."""
        return self._stream_results and not self._stream(endpoint).unimplemented

    def _stream(self, endpoint: str) -> ResultStream:
        stream = self._streams.get(endpoint)
        if stream is None:
            stream = self._streams[endpoint] = ResultStream(self._stub(endpoint))
        return stream

    async def send(self, endpoint: str, result: pb.TaskResult) -> pb.ResultAck:
        """Deliver `result`; retry transient failures with jittered exponential backoff."""
        delay = self._base
        for attempt in range(1, self._retries + 2):
            try:
                return await self._send_once(endpoint, result)
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

    async def _send_once(self, endpoint: str, result: pb.TaskResult) -> pb.ResultAck:
        """One try: on the endpoint's result stream once the master has accepted it, by SendResult until
        then (a master busy with other work can take seconds to start a new call) and for good where the
        master has no streams."""
        if self._streams_to(endpoint):
            stream = self._stream(endpoint)
            stream.open()
            if stream.ready:
                return await stream.send(result, CALL_TIMEOUT_S)
        ack: pb.ResultAck = await self._stub(endpoint).SendResult(result, timeout=CALL_TIMEOUT_S)
        return ack

    async def close(self) -> None:
        """End every stream and close every channel."""
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
