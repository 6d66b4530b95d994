"""The master's web front: Socket.IO and HTTP in a process of their own (WEB_PROCESS=true), so that the
master uses a second core. Started and kept running by the master's core (`services.master.fronts`), never by
hand: `python -m services.master.front` reads the master's settings from the environment and the link to the
core from MASTER_FRONT_FD.

The front decides nothing: it validates what users send, keeps their connections and forwards to the core;
the core answers each question's acknowledgement once the question is journaled, as in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.loop import runner
from services.master.fronts import FRONT_FD, RemoteError
from services.master.link import Link, LinkClosed
from services.master.settings import MasterSettings
from services.protocol import DashboardSnapshot, QueryAck, ScalingReport, StatusReport, SystemStatus, UserQuery

# How long `/leader` waits for the core: the proxy checks every 0.5 s and gives up after 1 s.
LEADER_TIMEOUT_S = 0.8

if TYPE_CHECKING:
    from services.master.app import WebEdge

log = logging.getLogger("services.master.front")


class RemoteMaster:
    """The master as the front's web edge sees it (a `MasterFace`): calls go to the core over the link; the
    system status and the health come from the core when they change."""

    def __init__(self, settings: MasterSettings, link: Link) -> None:
        self.settings = settings
        self.healthy = False
        self._link = link
        self._status = SystemStatus(workers=0, idle=0, busy=0, queued=0)
        self._replies: dict[int, asyncio.Future[object]] = {}
        self._ids = itertools.count(1)
        self._broadcasting: asyncio.Future[int] | None = None

    def status_summary(self) -> SystemStatus:
        """The last status the core sent."""
        return self._status

    def session_opened(self, session_id: str) -> None:
        """Tell the core: it sends to a session only while it has connections here."""
        self._link.send(("opened", session_id))

    def session_closed(self, session_id: str) -> None:
        """Tell the core a connection of the session closed."""
        self._link.send(("closed", session_id))

    async def session_connected(self, session_id: str) -> None:
        """Tell the core; it resends the session's answers and positions."""
        self._link.send(("connected", session_id))

    def refuse(self, message: str, reason: str = "bad_request") -> QueryAck:
        """Refuse here, counted in the core."""
        self._link.send(("refused", reason))
        return QueryAck.refuse(message)

    def count_refusal(self, reason: str) -> None:
        """Count a refused connection in the core."""
        self._link.send(("count_refusal", reason))

    def expects_acks(self, session_id: str) -> None:
        """Tell the core the session acknowledges its answers."""
        self._link.send(("expects_acks", session_id))

    async def submit(self, session_id: str, query: UserQuery, address: str = "") -> QueryAck:
        """The core's acknowledgement of the question (after it was journaled)."""
        ack = await self._call("submit", session_id, query, address)
        assert isinstance(ack, QueryAck)
        return ack

    async def status_report(self) -> StatusReport:
        """The core's REST status."""
        report = await self._call("status")
        assert isinstance(report, StatusReport)
        return report

    async def leader(self) -> dict[str, object]:
        """The core's word on its leadership; not leading when it does not answer within LEADER_TIMEOUT_S (a
        paused or stuck core must not look like a leader to the proxy)."""
        try:
            info = await asyncio.wait_for(self._call("leader"), LEADER_TIMEOUT_S)
        except TimeoutError:
            return {"leading": False, "epoch": None, "name": "", "error": "the master's core did not answer"}
        assert isinstance(info, dict)
        return info

    async def metrics_text(self) -> bytes:
        """The core's metrics."""
        text = await self._call("metrics")
        assert isinstance(text, bytes)
        return text

    async def dashboard_snapshot(self) -> DashboardSnapshot:
        """The core's dashboard snapshot."""
        snapshot = await self._call("dashboard")
        assert isinstance(snapshot, DashboardSnapshot)
        return snapshot

    async def report_scaling(self, report: ScalingReport) -> None:
        """Hand the autoscaler's decision to the core, once it has recorded it."""
        await self._call("scaling", report)

    async def retire_worker(self, worker_id: str) -> bool | None:
        """The core's answer to retiring a worker (None: it does not know it)."""
        idle = await self._call("retire", worker_id)
        assert idle is None or isinstance(idle, bool)
        return idle

    async def _call(self, what: str, *args: object) -> object:
        call_id = next(self._ids)
        reply: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._replies[call_id] = reply
        self._link.send(("call", call_id, what, *args))
        try:
            value = await reply
        finally:
            self._replies.pop(call_id, None)
        if isinstance(value, RemoteError):
            raise value
        return value

    async def serve(self, web: WebEdge) -> None:
        """Carry out what the core sends until the link closes (LinkClosed)."""
        try:
            async for message in self._link.messages():
                kind = message[0]
                if kind == "emit":
                    _, event, data, session_id, ack_id = message
                    await web.send_data(event, data, session_id, None if ack_id is None else self._acked(ack_id))
                elif kind == "reply":
                    reply = self._replies.get(message[1])
                    if reply is not None and not reply.done():
                        reply.set_result(message[2])
                elif kind == "status":  # what a client gets on connect
                    self._status = SystemStatus.model_validate(message[1])
                elif kind == "broadcast":  # the system status (the core broadcasts nothing else), to everyone
                    _, event, data, per_second = message
                    self._status = SystemStatus.model_validate(data)
                    self._broadcast(web, event, per_second)
                elif kind == "health":
                    self.healthy = bool(message[1])
        finally:
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(LinkClosed("the master's core is gone"))

    def _broadcast(self, web: WebEdge, event: str, per_second: float) -> None:
        """Send the current status to everyone, unless a send is under way: paced to many clients it may take
        seconds, so it runs beside the link's other messages, and when it ends a status that changed meanwhile
        goes out next."""
        if self._broadcasting is not None and not self._broadcasting.done():
            return
        sent = self._status
        self._broadcasting = asyncio.ensure_future(web.broadcast(event, sent, per_second))

        def then(_: object) -> None:
            if self._status != sent:
                self._broadcast(web, event, per_second)

        self._broadcasting.add_done_callback(then)

    def _acked(self, ack_id: int) -> Callable[[], None]:
        def acked() -> None:
            self._link.send(("acked", ack_id))

        return acked


async def serve_front(settings: MasterSettings, fd: int) -> None:
    """The front's life: the link to the core, the web edge bound to it, the HTTP server; until the core is
    gone (then exit) or SIGTERM."""
    from services.master.__main__ import until_stopped
    from services.master.app import WebEdge
    from services.master.intake import new_session_id
    from services.master.web_server import web_server

    link = await Link.open(socket.socket(fileno=fd))
    remote = RemoteMaster(settings, link)
    web = WebEdge(new_session_id, lambda: remote.healthy, settings.cors_origins)
    web.bind(remote)
    http = web_server(web.app, settings)
    tasks = [
        asyncio.create_task(remote.serve(web), name="link"),
        asyncio.create_task(http.serve(), name="http"),
    ]
    await until_stopped(tasks)
    if tasks[0].done():
        # The core is gone (killed, or stopping). Leave at once: a graceful uvicorn shutdown waits for open
        # long-polls and connections, and meanwhile this process holds the port the restarted master's new
        # front must bind. The users' connections break either way and their clients reconnect.
        log.warning("the master's core is gone: the web front exits")
        logging.shutdown()
        os._exit(0)
    http.should_exit = True
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    await link.close()


def main() -> int:
    """Entry point of the front process (started by the master's core)."""
    fd = os.environ.get(FRONT_FD)
    if fd is None or not fd.isdigit():
        print(
            "services.master.front is started by the master (python -m services.master), not by hand", file=sys.stderr
        )
        return 2
    settings = MasterSettings.from_env()
    logging.basicConfig(
        level=settings.log_level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runner(settings.event_loop)(serve_front(settings, int(fd)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
