"""The master's background loops: each runs one step of `Master` on a schedule, forever."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from services.master.service import Master
from services.protocol import DashboardSnapshot, Events, SystemStatus

log = logging.getLogger(__name__)

# How often queued users are told their new position, and everyone the system's state, at most.
POSITION_INTERVAL_S = 0.25
STATUS_INTERVAL_S = 1.0
# How often leases are checked (and, less often, old undelivered answers dropped).
LEASE_CHECK_S = 0.5
# How often open dashboards get a snapshot.
DASHBOARD_INTERVAL_S = 1.0
# How often, at most, the journal's WAL is emptied into the database (the old copies of ended tasks' pages gone).
CHECKPOINT_INTERVAL_S = 2.0

Broadcast = Callable[[str, SystemStatus], Awaitable[None]]  # (event, payload) to every client


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
    """Forever: tell every client how many workers are online and busy and how long the queue is."""
    last: SystemStatus | None = None
    while True:
        summary = master.status_summary()
        if summary != last:
            await broadcast(Events.STATUS, summary)
            last = summary
        await asyncio.sleep(STATUS_INTERVAL_S)


async def tell_dashboards(master: Master, send: Callable[[DashboardSnapshot], Awaitable[None]]) -> None:
    """Forever: send the dashboards a snapshot at once, then about once a second.

    Not one of `background`'s: the web edge runs it only while a dashboard is connected (and cancels it when the
    last one leaves), so that without a dashboard it costs nothing at all."""
    while True:
        try:
            await send(master.dashboard())
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
