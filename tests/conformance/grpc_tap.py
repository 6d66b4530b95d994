"""A gRPC tap for the conformance suite, run as its own process (grpc in the test process beside forked
children has aborted a worker once): `python -m tests.conformance.grpc_tap --port N --upstream HOST:PORT`.

It serves `WorkerCallback` (SendResult and StreamResults) and passes every TaskResult on to the master at
`--upstream` by SendResult (the master checks both calls alike), so the master can advertise the tap as its
gRPC endpoint. Each result, each stream opened and each fault is written to stdout as one JSON line; the
first line is `{"event": "listening", ...}`. Faults are set by JSON lines on stdin (`{"seq": 1, "set":
{"drop_ack": 1}}`, answered by `{"event": "ok", "seq": 1}`):

| fault | what the worker sees |
|---|---|
| `stream_unimplemented` (bool) | every new StreamResults call ends at once with UNIMPLEMENTED (a baseline master) |
| `unavailable` (n) | the next n results fail with UNAVAILABLE and are not passed on |
| `drop_ack` (n) | the next n results are passed on (the master takes them) and the ack is lost: UNAVAILABLE |
| `refuse` (n) | the next n results are answered `ResultAck(success=false, "refused: ...")`, not passed on |

The process ends when stdin closes (the test process is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from services.protocol.rpc import pb, pb_grpc

REFUSAL = "refused: injected by the conformance tap"
FAULT_COUNTERS = ("unavailable", "drop_ack", "refuse")


class Abort(Exception):
    """End the worker's call with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def emit(**record: Any) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def as_dict(result: pb.TaskResult) -> dict[str, Any]:
    """Every field of a TaskResult, defaults included."""
    return {field.name: getattr(result, field.name) for field in result.DESCRIPTOR.fields}


class Tap(pb_grpc.WorkerCallbackServicer):
    """The pass-through servicer with its faults."""

    def __init__(self, upstream: str) -> None:
        self.channel = grpc.aio.insecure_channel(upstream)
        self.stub = pb_grpc.WorkerCallbackStub(self.channel)  # type: ignore[no-untyped-call]
        self.stream_unimplemented = False
        self.counters = dict.fromkeys(FAULT_COUNTERS, 0)
        self.streams = 0
        self.sequence = 0

    def configure(self, changes: dict[str, Any]) -> None:
        """Apply a `set` command."""
        for name, value in changes.items():
            if name == "stream_unimplemented":
                self.stream_unimplemented = bool(value)
            elif name in self.counters:
                self.counters[name] = int(value)
            else:
                raise ValueError(f"unknown fault {name!r}")

    def _take_fault(self) -> str | None:
        for name in FAULT_COUNTERS:
            if self.counters[name] > 0:
                self.counters[name] -= 1
                return name
        return None

    async def _handle(self, result: pb.TaskResult, rpc: str, call: int) -> pb.ResultAck:
        self.sequence += 1
        record: dict[str, Any] = {
            "event": "result",
            "seq": self.sequence,
            "rpc": rpc,
            "call": call,
            "at": time.time(),
            "result": as_dict(result),
        }
        fault = self._take_fault()
        record["fault"] = fault
        if fault == "unavailable":
            emit(**record, ack=None)
            raise Abort(grpc.StatusCode.UNAVAILABLE, "injected by the conformance tap")
        if fault == "refuse":
            emit(**record, ack={"success": False, "message": REFUSAL}, acked_at=time.time())
            return pb.ResultAck(success=False, message=REFUSAL)
        try:
            ack: pb.ResultAck = await self.stub.SendResult(result, timeout=10)
        except grpc.aio.AioRpcError as e:
            emit(**record, ack=None, upstream_error=e.code().name)
            raise Abort(e.code(), e.details() or "") from None
        answer = {"success": ack.success, "message": ack.message}
        if fault == "drop_ack":
            emit(**record, ack=answer, dropped=True)
            raise Abort(grpc.StatusCode.UNAVAILABLE, "ack lost (injected by the conformance tap)")
        # Written before the worker can have the ack: `acked_at` comes before anything the ack causes.
        emit(**record, ack=answer, acked_at=time.time())
        return ack

    async def SendResult(self, request: pb.TaskResult, context: grpc.aio.ServicerContext) -> pb.ResultAck:
        try:
            return await self._handle(request, "unary", 0)
        except Abort as a:
            await context.abort(a.code, a.details)
            raise  # pragma: no cover - abort raises

    async def StreamResults(
        self, request_iterator: AsyncIterator[pb.TaskResult], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ResultAck]:
        self.streams += 1
        call = self.streams
        emit(event="stream", call=call, unimplemented=self.stream_unimplemented, at=time.time())
        if self.stream_unimplemented:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        await context.send_initial_metadata(())  # the master accepts the call at once, as ours does
        async for result in request_iterator:
            try:
                ack = await self._handle(result, "stream", call)
            except Abort as a:
                await context.abort(a.code, a.details)
            yield ack


async def control(tap: Tap) -> None:
    """Read commands from stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        try:
            tap.configure(command.get("set", {}))
            emit(event="ok", seq=command.get("seq"))
        except ValueError as e:
            emit(event="error", seq=command.get("seq"), message=str(e))


async def serve(port: int, upstream: str) -> None:
    """Serve until stdin closes."""
    tap = Tap(upstream)
    server = grpc.aio.server()
    pb_grpc.add_WorkerCallbackServicer_to_server(tap, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    emit(event="listening", port=bound)
    try:
        await control(tap)
    finally:
        await server.stop(grace=None)
        await tap.channel.close()


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description="A recording, fault-injecting gRPC proxy to the master.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, help="the master's gRPC host:port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
