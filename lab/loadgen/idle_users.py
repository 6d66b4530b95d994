"""Idle users: many Socket.IO connections that join, get their session id and then only stay connected.

Each is one WebSocket (the `websockets` library) speaking the least of Engine.IO v4 / Socket.IO v5 that a
connected user needs: the open packet `0{...}`, `40` to join the namespace (answered by `40{"sid":...}`),
`3` for every `2` (the server's ping); events (`42[...]`) are read and dropped. A python-socketio client per
connection costs far more (its own tasks, queues and an aiohttp session), too much for 10,000 in one process.

`python -m lab.loadgen.idle_users URL COUNT` holds COUNT of them in a process of its own, prints
`connected N` once all are connected (`failed N: why` when some could not be) and closes them all when its
standard input closes: the benchmark that starts it (lab.bench.connections) keeps its own event loop free of
10,000 sockets, so the active users' latencies it measures are the master's, not its own process's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from typing import Any

__all__ = ["IdleUsers", "raise_open_files"]

ENGINEIO_PATH = "/socket.io/?EIO=4&transport=websocket"
CONNECT_TIMEOUT_S = 30.0
OPENING_AT_ONCE = 200  # connections opening at once: a burst of 10,000 handshakes would overrun the listen backlog


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft limit on open files to `wanted` (at most the hard limit); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def websocket_url(url: str) -> str:
    """The Engine.IO WebSocket endpoint of a master at `url` (http://host:port)."""
    return url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1) + ENGINEIO_PATH


class IdleUsers:
    """`count` idle users of the master at `url`; `deflate`: offer permessage-deflate, as browsers do."""

    def __init__(self, url: str, count: int, deflate: bool = True) -> None:
        self.url = websocket_url(url)
        self.count = count
        self.deflate = deflate
        self.connected = 0  # users that got their namespace sid
        self.failures: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._all_in = asyncio.Event()
        self._open: list[Any] = []  # the connections that joined

    async def open(self) -> None:
        """Start every user; return once each is connected or failed."""
        raise_open_files(self.count + 256)
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        self._tasks = [asyncio.create_task(self._user(gate)) for _ in range(self.count)]
        if self.count:
            await self._all_in.wait()

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(ws.close() for ws in self._open), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _settled(self) -> None:
        if self.connected + len(self.failures) >= self.count:
            self._all_in.set()

    async def _user(self, gate: asyncio.Semaphore) -> None:
        from websockets.asyncio.client import connect  # here: the `lab` command imports this module's users

        settled = False
        try:
            async with gate:
                ws = await asyncio.wait_for(
                    connect(
                        self.url,
                        compression="deflate" if self.deflate else None,
                        ping_interval=None,  # Engine.IO pings; no WebSocket pings on top
                        max_queue=4,
                    ),
                    CONNECT_TIMEOUT_S,
                )
                await asyncio.wait_for(self._join(ws), CONNECT_TIMEOUT_S)
            self.connected += 1
            settled = True
            self._settled()
            self._open.append(ws)
            async for packet in ws:  # until close() closes it
                if packet == "2":
                    await ws.send("3")
        except Exception as e:  # one user failing is counted, not fatal
            if not settled:
                self.failures.append(f"{type(e).__name__}: {e}")
                self._settled()

    @staticmethod
    async def _join(ws: Any) -> None:
        """Engine.IO open, then the Socket.IO connect to the default namespace."""
        opened = await ws.recv()
        if not str(opened).startswith("0"):
            raise ConnectionError(f"expected an Engine.IO open packet, got {str(opened)[:40]!r}")
        await ws.send("40")
        while True:
            packet = str(await ws.recv())
            if packet.startswith("40"):
                json.loads(packet[2:] or "{}")
                return
            if packet.startswith("44"):
                raise ConnectionRefusedError(packet[2:200])
            if packet == "2":
                await ws.send("3")


async def _hold(url: str, count: int, deflate: bool) -> int:
    users = IdleUsers(url, count, deflate)
    await users.open()
    if users.failures:
        print(f"failed {len(users.failures)}: {users.failures[0]}", flush=True)
    print(f"connected {users.connected}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
    await users.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Hold COUNT idle users of URL until standard input closes."""
    parser = argparse.ArgumentParser(prog="python -m lab.loadgen.idle_users", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    args = parser.parse_args(argv)
    from services.loop import run as run_loop

    return int(run_loop(_hold(args.url, args.count, not args.no_deflate)))


if __name__ == "__main__":
    sys.exit(main())
