"""The core's side of a master spread over two processes (WEB_PROCESS=true): the web front runs Socket.IO and
HTTP in a process of its own (`services.master.front`), the core keeps everything that decides (dispatcher,
journal, MQTT, gRPC). This module starts the front, keeps it running, sends to users through it, and hands
the master what the front's users ask.

Exactly once is unchanged: every decision, the journal and the answers waiting for acknowledgement stay in the
core; the front holds only connections. A front that dies loses connections, not questions: its users
reconnect (to the front started again) and get their waiting answers as after any reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from services.master.link import Link, LinkClosed, Message
from services.master.service import Master
from services.protocol import Payload, SystemStatus

log = logging.getLogger(__name__)

FRONT_FD = "MASTER_FRONT_FD"  # the front's end of the socket pair, in the front's environment
RESTART_DELAY_S = 0.5  # before starting a front again (its port may still be held by the one that died)
STOP_GRACE_S = 5.0


class FrontLink:
    """Sends to the front's users and takes the front's requests, over one link.

    Knows how many connections each session has at the front (the front says when one opens and closes), so
    that `send` answers like the web edge does in one process: how many connections an event went to."""

    def __init__(self) -> None:
        self._link: Link | None = None
        self._members: Counter[str] = Counter()
        self._acks: dict[int, tuple[str, Callable[[], None]]] = {}  # ack id -> its session, what to run
        self._acks_of: dict[str, set[int]] = {}
        self._next_ack = 0
        self._healthy: bool | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def send(
        self, event: str, payload: Payload, session_id: str, on_ack: Callable[[], None] | None = None
    ) -> int:
        """Send an event to every connection of a session at the front; `on_ack` runs when one acknowledges.
        Returns how many connections it went to (0 without a front)."""
        count = self._members.get(session_id, 0)
        if not count or self._link is None:
            return 0
        ack_id = None
        if on_ack is not None:
            self._next_ack += 1
            ack_id = self._next_ack
            self._acks[ack_id] = (session_id, on_ack)
            self._acks_of.setdefault(session_id, set()).add(ack_id)
        self._link.send(("emit", event, payload.dump(), session_id, ack_id))
        return count

    async def broadcast(self, event: str, payload: SystemStatus, per_second: float = 0.0) -> int:
        """Send the system status to every client of the front (paced as `WebEdge.broadcast` paces it); returns to
        how many connections (of sessions)."""
        if self._link is None:
            return 0
        self._link.send(("broadcast", event, payload.dump(), per_second))
        return sum(self._members.values())

    def health(self, healthy: bool) -> None:
        """Tell the front whether the master is healthy (its /healthz), when that changed."""
        if healthy != self._healthy and self._link is not None:
            self._healthy = healthy
            self._link.send(("health", healthy))

    async def serve(self, link: Link, master: Master, healthy: bool) -> None:
        """Hand what the front sends to `master` until the link closes (LinkClosed); then forget its sessions."""
        self._link, self._healthy = link, None
        self.health(healthy)
        link.send(("status", master.status_summary().dump()))  # what a client gets on connect, from the start
        try:
            async for message in link.messages():
                self._handle(message, master)
        finally:
            self._link = None
            self._members.clear()
            self._acks.clear()
            self._acks_of.clear()

    def _handle(self, message: Message, master: Master) -> None:
        kind = message[0]
        if kind == "call":
            self._spawn(self._call(master, *message[1:]))
        elif kind == "acked":
            session_and_ack = self._acks.pop(message[1], None)
            if session_and_ack is not None:
                session_id, on_ack = session_and_ack
                self._acks_of.get(session_id, set()).discard(message[1])
                on_ack()
        elif kind == "opened":
            self._members[message[1]] += 1
        elif kind == "closed":
            self._closed(message[1])
        elif kind == "connected":
            self._spawn(master.session_connected(message[1]))
        elif kind == "expects_acks":
            master.expects_acks(message[1])
        elif kind == "refused":
            master.refuse("", message[1])
        elif kind == "count_refusal":
            master.count_refusal(message[1])
        else:
            log.warning("ignored a message of kind %r from the web front", kind)

    def _closed(self, session_id: str) -> None:
        self._members[session_id] -= 1
        if self._members[session_id] <= 0:
            del self._members[session_id]
            # Answers not acknowledged stay with the master, sent again when the session comes back.
            for ack_id in self._acks_of.pop(session_id, set()):
                self._acks.pop(ack_id, None)

    async def _call(self, master: Master, call_id: int, what: str, *args: Any) -> None:
        value: object
        try:
            if what == "submit":
                value = await master.submit(*args)
            elif what == "status":
                value = master.status()
            elif what == "leader":
                value = master.leader_info()
            elif what == "metrics":
                value = master.metrics.render()
            elif what == "dashboard":
                value = master.dashboard()
            elif what == "scaling":
                await master.report_scaling(*args)
                value = None
            elif what == "retire":
                value = await master.retire_worker(*args)
            else:
                raise ValueError(f"unknown call {what!r}")
        except Exception as e:  # the front's request fails, not the master
            log.exception("the web front's %s failed", what)
            value = RemoteError(f"{type(e).__name__}: {e}")
        if self._link is not None:
            self._link.send(("reply", call_id, value))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)


class RemoteError(Exception):
    """A call of the front failed in the core (its message says how)."""


async def run_front(front: FrontLink, master: Master, healthy: Callable[[], bool]) -> None:
    """Forever: start the web front process, serve it until it exits, start it again. Cancel to stop it."""
    while True:
        core_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ, FRONT_FD: str(front_end.fileno())}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.master.front", pass_fds=(front_end.fileno(),), env=env
        )
        front_end.close()
        link = await Link.open(core_end)
        watching = asyncio.create_task(_report_health(front, healthy))
        try:
            await front.serve(link, master, healthy())
        except LinkClosed:
            pass
        except asyncio.CancelledError:
            await _stop(process)
            raise
        finally:
            watching.cancel()
            await link.close()
        code = await process.wait()
        log.error("the web front exited (%s): starting it again", code)
        await asyncio.sleep(RESTART_DELAY_S)


async def _report_health(front: FrontLink, healthy: Callable[[], bool]) -> None:
    while True:
        front.health(healthy())
        await asyncio.sleep(0.5)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Ask the front to stop (its connections close cleanly), kill it if it does not."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
