"""The master's gRPC edge: the `WorkerCallback` service that receives results, converted into
`WorkerResult`s for the master, and answers with a `ResultAck`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from services.master.journal_records import ResultNotRecorded
from services.master.results import WorkerResult
from services.master.settings import MasterSettings
from services.protocol.rpc import pb, pb_grpc

log = logging.getLogger(__name__)

# (result) -> (accepted, message): how the master judges one result.
OnResult = Callable[[WorkerResult], Awaitable[tuple[bool, str]]]

# A result carries one answer; anything far larger is an abuse (the default limit is 4 MB).
MAX_MESSAGE_BYTES = 1 << 20


def worker_result(message: pb.TaskResult) -> WorkerResult:
    """The master's view of a `TaskResult`; timestamps before the epoch read as not said (0)."""
    return WorkerResult(
        worker_id=message.worker_id,
        task_id=message.task_id,
        attempt=message.attempt,
        token=message.token,
        response=message.ai_response,
        error=message.error,
        model=message.model,
        processing_time_ms=message.processing_time_ms,
        started_ms=max(0, message.started_timestamp),
        completed_ms=max(0, message.completion_timestamp),
        model_time_ms=message.model_time_ms,
    )


class ResultService(pb_grpc.WorkerCallbackServicer):
    """Hands each result of a `SendResult` call or a `StreamResults` message, as a `WorkerResult`, to
    `on_result(result) -> (accepted, message)` and answers with the `ResultAck` it says."""

    def __init__(self, on_result: OnResult) -> None:
        self._on_result = on_result
        self._handling: set[asyncio.Future[tuple[bool, str]]] = set()  # results being handled, kept alive

    async def SendResult(self, request: pb.TaskResult, context: grpc.aio.ServicerContext) -> pb.ResultAck:
        """Acknowledge a result: success only when it answers the task's current attempt."""
        return await self._ack(request, context)

    async def StreamResults(
        self, request_iterator: AsyncIterator[pb.TaskResult], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ResultAck]:
        """Acknowledge each result of a worker's long-lived stream in turn, as SendResult would; a call
        costs the master about three times what a message on an open stream does."""
        # Accept the call at once: a worker sends on the stream only once it has the master's metadata.
        await context.send_initial_metadata(())
        async for result in request_iterator:
            yield await self._ack(result, context)

    async def _ack(self, result: pb.TaskResult, context: grpc.aio.ServicerContext) -> pb.ResultAck:
        # Shielded: gRPC cancels a handler when its caller gives up (a deadline, a worker closing a stalled
        # stream), and a result cut off halfway would leave its task answered but never delivered. The
        # handling runs to its end; a worker that sends the result again is told it already landed.
        handling = asyncio.ensure_future(self._on_result(worker_result(result)))
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)
        try:
            accepted, message = await asyncio.shield(handling)
        except ResultNotRecorded as error:
            # UNAVAILABLE: the worker sends it again (on a stream, with every result still unacknowledged), and
            # reaches the master that restores from the journal after this one stops.
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
            raise  # abort() raises; this line is for the type checker
        except Exception:
            log.exception("error while handling a result")
            return pb.ResultAck(success=False, message="internal error while handling the result")
        return pb.ResultAck(success=accepted, message=message)


def server_credentials(cert_path: str, key_path: str) -> grpc.ServerCredentials:
    """TLS credentials of the result server from PEM files (read once, at start)."""
    with open(key_path, "rb") as key, open(cert_path, "rb") as cert:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


async def start_grpc(
    settings: MasterSettings,
    on_result: OnResult,
    watch: pb_grpc.MasterEventsServicer,
) -> grpc.aio.Server:
    """Start the result server (with TLS when a certificate is set) and return it."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    pb_grpc.add_WorkerCallbackServicer_to_server(ResultService(on_result), server)  # type: ignore[no-untyped-call]
    pb_grpc.add_MasterEventsServicer_to_server(watch, server)  # type: ignore[no-untyped-call]
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    if settings.grpc_tls_cert and settings.grpc_tls_key:
        bound = server.add_secure_port(address, server_credentials(settings.grpc_tls_cert, settings.grpc_tls_key))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address} (port in use?)")
    await server.start()
    log.info("gRPC result server listening on %s%s", address, " (TLS)" if settings.grpc_tls_cert else "")
    return server
