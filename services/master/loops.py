"""The master's background loops: each runs one step of `Master` on a schedule, forever."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from services.master.face import MasterFace
from services.master.service import Master
from services.protocol import DashboardSnapshot, Events, SystemStatus

log = logging.getLogger(__name__)

# How often queued users are told their new position, and everyone the system's state, at most.
POSITION_INTERVAL_S = 0.25
STATUS_INTERVAL_S = 1.0
# Status frames per second to all clients together, at most: each costs the master about as much as a user's
# answer, and thousands at once stall the loop that answers the active users. So a status is sent to this many
# clients a second (spread over the second), and with many clients it goes out less often: every
# STATUS_INTERVAL_S up to this many clients, every 10 s to 10,000.
STATUS_FRAMES_PER_S = 1000.0
# How often leases are checked (and, less often, old undelivered answers dropped).
LEASE_CHECK_S = 0.5
# How often open dashboards get a snapshot.
DASHBOARD_INTERVAL_S = 1.0
# How often, at most, the journal's WAL is emptied into the database (the old copies of ended tasks' pages gone).
CHECKPOINT_INTERVAL_S = 2.0

# (event, payload, clients a second at most) to every client; returns to how many.
Broadcast = Callable[[str, SystemStatus, float], Awaitable[int]]


async def watch_leases(master: Master) -> None:
    """Forever: take back tasks whose lease ran out; now and then drop old undelivered answers."""
    while True:
        await asyncio.sleep(LEASE_CHECK_S)
        await master.tick()


async def checkpoint_journal(master: Master) -> None:
    """Forever: empty the journal's WAL when something was written (off the path of each answer)."""
    while True:
        await asyncio.sleep(CHECKPOINT_INTERVAL_S)
        try:
            master.journal.checkpoint()
        except sqlite3.Error as e:  # the next one may succeed; the master goes on either way
            log.warning("journal checkpoint failed: %s", e)


async def tell_positions(master: Master) -> None:
    """Forever: tell queued users their new position when it changed (coalesced)."""
    while True:
        await master.positions_changed.wait()
        master.positions_changed.clear()
        await master.send_positions()
        await asyncio.sleep(POSITION_INTERVAL_S)


async def tell_status(master: Master, broadcast: Broadcast) -> None:
    """Forever: tell every client how many workers are online and busy and how long the queue is, when it changed,
    checked every STATUS_INTERVAL_S; sent to STATUS_FRAMES_PER_S clients a second, and after a broadcast to N
    clients begun, none other for N / STATUS_FRAMES_PER_S seconds."""
    loop = asyncio.get_running_loop()
    last: SystemStatus | None = None
    while True:
        summary = master.status_summary()
        next_check = loop.time() + STATUS_INTERVAL_S
        if summary != last:
            began = loop.time()
            clients = await broadcast(Events.STATUS, summary, STATUS_FRAMES_PER_S)
            last = summary
            next_check = max(next_check, began + clients / STATUS_FRAMES_PER_S)
        await asyncio.sleep(max(0.0, next_check - loop.time()))


async def tell_dashboards(master: MasterFace, send: Callable[[DashboardSnapshot], Awaitable[None]]) -> None:
    """Forever: send the dashboards a snapshot at once, then about once a second.

    Not one of `background`'s: the web edge runs it only while a dashboard is connected (and cancels it when the
    last one leaves), so that without a dashboard it costs nothing at all."""
    while True:
        try:
            await send(await master.dashboard_snapshot())
        except Exception:  # a dashboard that cannot be shown must not stop the next snapshots, nor the master
            log.exception("dashboard snapshot failed")
        await asyncio.sleep(DASHBOARD_INTERVAL_S)


def background(master: Master, broadcast: Broadcast) -> dict[str, Coroutine[Any, Any, None]]:
    """Every loop the master needs, by name."""
    return {
        "positions": tell_positions(master),
        "leases": watch_leases(master),
        "status": tell_status(master, broadcast),
        "checkpoint": checkpoint_journal(master),
    }
