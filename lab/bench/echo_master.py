"""A stand-in master that answers every question at once, to measure the load generator without the system.

It speaks the master's Socket.IO protocol (session id, acknowledged `user-query`, `task-assigned`, an
acknowledged `ai-response`) and does nothing else. Run it as `python -m lab.bench.echo_master --port 8899`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from collections.abc import Sequence
from typing import Any

import socketio
from aiohttp import web

from services.protocol import AiResponse, DecodeError, Events, QueryAck, TaskAssigned, UserQuery, validate

FREEZE_EVERY_S = 1.0
_FREEZER = web.AppKey("freezer", asyncio.Task[None])


def build() -> web.Application:
    """An aiohttp application with the stand-in's Socket.IO server attached."""
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=[])
    app = web.Application()
    sio.attach(app)
    answering: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        await sio.emit(Events.SESSION_ID, uuid.uuid4().hex, to=sid)

    async def answer(sid: str, task_id: str, query: str) -> None:
        now_ms = int(time.time() * 1000)
        await sio.emit(Events.TASK_ASSIGNED, TaskAssigned(taskId=task_id, workerId="echo").dump(), to=sid)
        payload = AiResponse(
            taskId=task_id,
            query=query,
            response="echo",
            workerId="echo",
            processingTime=0,
            timestamp=now_ms,
            queryTimestamp=now_ms,
            model="echo",
        ).dump()
        # With a callback like the master's delivery, so the client pays for acknowledging answers too.
        await sio.emit(Events.AI_RESPONSE, payload, to=sid, callback=lambda *_: None)

    @sio.on(Events.USER_QUERY)  # type: ignore[untyped-decorator]
    async def user_query(sid: str, data: object = None) -> dict[str, Any]:
        try:
            query = validate(UserQuery, data).query
        except DecodeError:
            query = ""  # the stand-in answers anything
        task_id = str(uuid.uuid4())
        # After the ack, as from the real master: the answer comes from elsewhere, later.
        task = asyncio.create_task(answer(sid, task_id, query))
        answering.add(task)
        task.add_done_callback(answering.discard)
        return QueryAck.accept(task_id, 0).dump()

    app.on_startup.append(_start_freezing)
    return app


async def _start_freezing(app: web.Application) -> None:
    """Keep full garbage collections from stalling the stand-in, like lab.loadgen.users.steady_heap does for
    the generator."""

    async def freeze() -> None:
        while True:
            gc.freeze()  # with thousands of connections a full collection stops it for hundreds of ms
            await asyncio.sleep(FREEZE_EVERY_S)

    app[_FREEZER] = asyncio.get_running_loop().create_task(freeze())


def main(argv: Sequence[str] | None = None) -> None:
    """Serve on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(build(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
