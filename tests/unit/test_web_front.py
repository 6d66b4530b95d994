"""The web front's side of the link (`RemoteMaster.serve`): what the core sends is carried out, a paced status
broadcast does not hold up the rest, and the last status always reaches the clients."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from services.master.front import RemoteMaster
from services.master.link import Link
from services.master.settings import MasterSettings
from services.protocol import Events, SystemStatus


class FakeWeb:
    """Records what the front asks of its web edge; a broadcast lasts until `release` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str]] = []
        self.broadcasts: list[SystemStatus] = []
        self.release = asyncio.Event()

    async def send_data(self, event: str, data: Any, session_id: str, on_ack: Any = None) -> int:
        self.sent.append((event, data, session_id))
        return 1

    async def broadcast(self, event: str, payload: SystemStatus, per_second: float = 0.0) -> int:
        self.broadcasts.append(payload)
        await self.release.wait()
        return 1


def status(queued: int) -> dict[str, int]:
    return SystemStatus(workers=1, idle=0, busy=1, queued=queued).dump()


async def test_a_slow_broadcast_holds_up_nothing_and_the_last_status_goes_out_after_it() -> None:
    core_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    core, link = await Link.open(core_end), await Link.open(front_end)
    remote, web = RemoteMaster(MasterSettings(), link), FakeWeb()
    serving = asyncio.create_task(remote.serve(web))  # type: ignore[arg-type]
    core.send(("broadcast", Events.STATUS, status(1), 1000.0))
    core.send(("broadcast", Events.STATUS, status(2), 1000.0))  # while the first is still going out
    core.send(("broadcast", Events.STATUS, status(3), 1000.0))
    core.send(("emit", Events.AI_RESPONSE, {"taskId": "t1"}, "session-1", None))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if web.sent:
            break
    assert web.sent == [(Events.AI_RESPONSE, {"taskId": "t1"}, "session-1")]  # not behind the broadcast
    assert [s.queued for s in web.broadcasts] == [1]
    assert remote.status_summary().queued == 3  # what a client connecting now gets
    web.release.set()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(web.broadcasts) == 2:
            break
    assert [s.queued for s in web.broadcasts] == [1, 3]  # the latest, once; the one in between skipped
    serving.cancel()
    await core.close()
    await link.close()
