"""HAProxy in front of three stand-in masters (lab/system/haproxy.py): only the one whose `GET /leader` answers 200
gets web, websocket and gRPC (TCP) traffic, and the traffic follows when leadership moves."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from lab.system.haproxy import Backend, Haproxy, HaproxyConfigError, check_config, haproxy_config
from lab.system.ports import free_port
from tests.conftest import require

MOVE_BOUND_S = 3.0  # a loose bound: the checks (every 0.5 s, down after 2) move it in well under a second here
PAUSED_BOUND_S = 4.0  # a paused leader fails two checks by timeout (1 s each): about 2.5 s


def require_haproxy() -> None:
    """Real HAProxy must be installed."""
    found = shutil.which("haproxy") is not None or Path("/usr/sbin/haproxy").exists()
    require("haproxy", found, "`sudo apt-get install haproxy`")


class FakeMaster:
    """A stand-in master: `GET /leader` (200 while `leading`, else 503), `GET /who` (its name and the
    X-Forwarded-For it got), a websocket on /ws that greets with its name, and a "gRPC" TCP port that answers
    each line with `name:line`. While `paused`, it answers nothing (like a process stopped with SIGSTOP)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.leading = False
        self.web_port = free_port()
        self.grpc_port = free_port()
        self._runner: web.AppRunner | None = None
        self._tcp: asyncio.Server | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._running = asyncio.Event()
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @paused.setter
    def paused(self, paused: bool) -> None:
        if paused:
            self._running.clear()
        else:
            self._running.set()

    @property
    def backend(self) -> Backend:
        return Backend(self.name, "127.0.0.1", self.web_port, self.grpc_port)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/leader", self._leader)
        app.router.add_get("/who", self._who)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.web_port).start()
        self._tcp = await asyncio.start_server(self._echo, "127.0.0.1", self.grpc_port)

    async def stop(self) -> None:
        """Close both ports: connections are refused from now on."""
        self.paused = False  # let hanging handlers finish
        if self._tcp is not None:
            self._tcp.close()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._tcp = None

    async def _leader(self, request: web.Request) -> web.Response:
        await self._running.wait()
        if not self.leading:
            return web.json_response({"leading": False, "epoch": None, "name": self.name}, status=503)
        return web.json_response({"leading": True, "epoch": 1, "name": self.name})

    async def _who(self, request: web.Request) -> web.Response:
        await self._running.wait()
        return web.json_response({"name": self.name, "forwarded": request.headers.get("X-Forwarded-For")})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await ws.send_str(self.name)
            async for message in ws:
                await ws.send_str(f"{self.name}:{message.data}")
        finally:
            self._sockets.discard(ws)
        return ws

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (line := await reader.readline()) and await self._running.wait():
                writer.write(f"{self.name}:{line.decode()}".encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def masters() -> AsyncIterator[list[FakeMaster]]:
    started = [FakeMaster(f"m{i}") for i in (1, 2, 3)]
    for master in started:
        await master.start()
    started[0].leading = True
    yield started
    for master in started:
        await master.stop()


@pytest.fixture
async def proxy(masters: list[FakeMaster], tmp_path: Path) -> AsyncIterator[Haproxy]:
    require_haproxy()
    log = tmp_path / "haproxy.log"

    def sink(name: str, line: str) -> None:
        with log.open("a") as f:
            f.write(f"{name} | {line}\n")

    proxy = Haproxy([m.backend for m in masters], tmp_path / "haproxy", sink=sink)
    await asyncio.to_thread(proxy.start)
    try:
        yield proxy
    finally:
        code = await asyncio.to_thread(proxy.stop)
        assert code is not None and code <= 0, f"haproxy exited with {code}"


async def web_answer(http: aiohttp.ClientSession, proxy: Haproxy) -> tuple[int, dict[str, object] | None]:
    """The status of GET /who through the proxy and its JSON (None when it is not a master's)."""
    async with http.get(f"{proxy.web_url}/who") as response:
        body = await response.text()
        return response.status, json.loads(body) if response.status == 200 else None


async def grpc_answer(proxy: Haproxy) -> str | None:
    """Which master's TCP port answered through the gRPC frontend (None: the proxy closed the connection)."""
    host, port = proxy.grpc_endpoint.split(":")
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return None
    try:
        writer.write(b"ping\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 0.5)
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()
    if not line:  # closed by the proxy: no server is up
        return None
    name, _, rest = line.decode().partition(":")
    assert rest == "ping\n"
    return name


async def time_until_both_reach(
    http: aiohttp.ClientSession, proxy: Haproxy, name: str, bound: float = MOVE_BOUND_S
) -> float:
    """Seconds until the web and the gRPC frontends both answer from `name` (failing after `bound`)."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        try:
            status, body = await asyncio.wait_for(web_answer(http, proxy), 0.5)
        except asyncio.TimeoutError:  # a paused master still gets it
            status, body = 0, None
        if status == 200 and body is not None and body["name"] == name and await grpc_answer(proxy) == name:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"traffic did not move to {name} within {bound} s")


def test_the_rendered_config_passes_haproxys_own_check(tmp_path: Path) -> None:
    require_haproxy()
    path = tmp_path / "haproxy.cfg"
    backends = [Backend(f"m{i}", "127.0.0.1", 18080 + i, 18090 + i) for i in (1, 2, 3)]
    path.write_text(haproxy_config(backends, 18888, 18051))
    check_config(path)


def test_a_config_haproxy_refuses_raises_with_its_output(tmp_path: Path) -> None:
    require_haproxy()
    path = tmp_path / "haproxy.cfg"
    path.write_text("frontend web\n    mode bogus\n")
    with pytest.raises(HaproxyConfigError, match="bogus"):
        check_config(path)


async def test_traffic_reaches_only_the_leader_and_follows_it(masters: list[FakeMaster], proxy: Haproxy) -> None:
    m1, m2, m3 = masters
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        await time_until_both_reach(http, proxy, "m1")  # m1's first check may not have run yet
        for _ in range(10):
            status, body = await web_answer(http, proxy)
            assert status == 200 and body == {"name": "m1", "forwarded": "127.0.0.1"}
            assert await grpc_answer(proxy) == "m1"

        async with http.ws_connect(f"{proxy.web_url}/ws") as ws:
            assert await ws.receive_str(timeout=5) == "m1"
            await ws.send_str("hello")
            assert await ws.receive_str(timeout=5) == "m1:hello"

            # Leadership moves: m1 answers 503 at once, m2 200.
            m1.leading, m2.leading = False, True
            moved = await time_until_both_reach(http, proxy, "m2")
            # The websocket to the old leader is cut (on-marked-down), so that its client reconnects.
            message = await ws.receive(timeout=MOVE_BOUND_S)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)

        async with http.ws_connect(f"{proxy.web_url}/ws") as ws:
            assert await ws.receive_str(timeout=5) == "m2"

        # The leader dies (its ports refuse connections) and m3 takes over.
        await m2.stop()
        m3.leading = True
        died = await time_until_both_reach(http, proxy, "m3")

        # No leader at all: the web frontend answers 503, the gRPC one closes the connection.
        m3.leading = False
        deadline = time.monotonic() + MOVE_BOUND_S
        # The two frontends' checks run apart: each notices on its own.
        while (await web_answer(http, proxy))[0] != 503 or await grpc_answer(proxy) is not None:
            assert time.monotonic() < deadline, "a frontend still reaches the old leader when none leads"
            await asyncio.sleep(0.02)

        m1.leading = True
        back = await time_until_both_reach(http, proxy, "m1")
    print(f"traffic moved in {moved:.2f} s (503), {died:.2f} s (refused), {back:.2f} s (after no leader)")


async def test_a_paused_leader_is_taken_out_of_traffic(masters: list[FakeMaster], proxy: Haproxy) -> None:
    m1, m2, _ = masters
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        await time_until_both_reach(http, proxy, "m1")
        m1.paused = True  # its ports still accept connections; nothing answers
        m2.leading = True
        moved = await time_until_both_reach(http, proxy, "m2", PAUSED_BOUND_S)
    print(f"traffic left the paused leader in {moved:.2f} s")
