"""HAProxy in front of standby masters: only the master whose `GET /leader` answers 200 gets traffic, on the web
port (HTTP mode: REST, Socket.IO long-polling and websockets) and on the gRPC port (TCP mode, same health)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.system.ports import accepts_tcp, free_port
from lab.system.procs import LogSink, ManagedProcess, Spawner
from lab.system.readiness import wait_ready

HAPROXY = "haproxy"
_FALLBACK_BINARY = Path("/usr/sbin/haproxy")  # Debian puts it outside a normal user's PATH
CONFIG_NAME = "haproxy.cfg"
LEADER_PATH = "/leader"
# HAProxy's server names: letters, digits and `-_.:`; anything else would break the config line.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class Backend:
    """One master behind the proxy: its name (in HAProxy's logs), host, web port and gRPC port."""

    name: str
    host: str
    web_port: int
    grpc_port: int


class HaproxyNotFoundError(RuntimeError):
    """The haproxy binary is not installed."""

    def __init__(self) -> None:
        super().__init__(f"{HAPROXY} not found: install it with `sudo apt-get install haproxy` (or `make setup-test`)")


class HaproxyConfigError(RuntimeError):
    """`haproxy -c` refused the rendered config; the message carries its output."""


def find_haproxy() -> Path:
    """The path of the haproxy binary; raises HaproxyNotFoundError when there is none."""
    found = shutil.which(HAPROXY)
    if found:
        return Path(found)
    if os.access(_FALLBACK_BINARY, os.X_OK):
        return _FALLBACK_BINARY
    raise HaproxyNotFoundError()


# The health check of both backends: only a 200 to GET /leader counts as up. HTTP/1.1 with a Host header rather
# than the bare `option httpchk GET /leader` (HTTP/1.0, no Host), which some HTTP servers refuse.
_CHECK = [
    "    option httpchk",
    f"    http-check send meth GET uri {LEADER_PATH} ver HTTP/1.1 hdr Host localhost",
    "    http-check expect status 200",
]


def haproxy_config(
    masters: Sequence[Backend],
    web_port: int,
    grpc_port: int,
    host: str = "127.0.0.1",
    *,
    check_interval_ms: int = 500,
    check_timeout_ms: int = 1000,
    maxconn: int = 4096,
    tunnel_timeout: str = "1h",
) -> str:
    """The config text: a web frontend on `host:web_port` (HTTP) and a gRPC frontend on `host:grpc_port` (TCP),
    each sending to the one master whose `GET /leader` on its web port answers 200.

    A master is marked down after two failed checks (`check_interval_ms` apart, each failing at the latest after
    `check_timeout_ms`: a paused master counts as down within about two seconds) and up after one good check.
    `maxconn` bounds concurrent client connections; `tunnel_timeout` is how long an idle websocket or gRPC
    connection stays open.
    """
    if not masters:
        raise ValueError("haproxy needs at least one master")
    names = [m.name for m in masters]
    if len(set(names)) != len(names):
        raise ValueError(f"master names must differ: {names}")
    for value in [*names, host, *(m.host for m in masters)]:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r} cannot be used in an HAProxy config")
    fast = max(check_interval_ms // 2, 100)
    lines = [
        "# Written by the lab (lab/system/haproxy.py) for this run.",
        "global",
        # Each proxied connection is two sockets; 2000 Socket.IO clients, some with a long-poll beside their
        # websocket while upgrading, fit in the default.
        f"    maxconn {maxconn}",
        "",
        "defaults",
        # No `log` line: HAProxy in the foreground (-db) still writes its warnings (a server going DOWN or UP)
        # to stderr, which the lab streams; a line per request would swamp the lab's log under load.
        f"    maxconn {maxconn}",  # a frontend's own default (2000 in older releases) would cap it below global
        "    timeout connect 2s",
        # Longer than Socket.IO's long-poll (ping interval 25 s) plus its ping timeout (20 s).
        "    timeout client 60s",
        "    timeout server 60s",
        # After a websocket upgrade, and for TCP (gRPC streams), idle connections last this long.
        f"    timeout tunnel {tunnel_timeout}",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        # Reading the check's answer; without it a paused master (port open, nobody answers) stays up for long.
        f"    timeout check {check_timeout_ms}ms",
        # A connection refused by a master that just died (not yet marked down) is tried once more, after
        # HAProxy's 1 s turn-around, on whichever master is up then: a delay rather than an error. (Each
        # further retry would add a second.)
        "    retries 1",
        "    option redispatch",
        # on-marked-down: connections still open to a master that stopped leading are cut, so that Socket.IO
        # clients and workers' gRPC channels reconnect, to the new leader, instead of talking to a standby.
        f"    default-server inter {check_interval_ms}ms fastinter {fast}ms downinter {check_interval_ms}ms"
        " fall 2 rise 1 on-marked-down shutdown-sessions",
        "",
        "frontend web",
        "    mode http",
        f"    bind {host}:{web_port}",
        # The master trusts one hop (TRUSTED_PROXY_HOPS=1) to tell the client's address.
        "    option forwardfor",
        "    default_backend masters_web",
        "",
        "backend masters_web",
        "    mode http",
        # No stickiness: at most one master is up; `first` takes the first server that is up.
        "    balance first",
        *_CHECK,
        *(f"    server {m.name} {m.host}:{m.web_port} check" for m in masters),
        "",
        "frontend grpc",
        # TCP: HTTP/2 and TLS (if any) pass through untouched.
        "    mode tcp",
        f"    bind {host}:{grpc_port}",
        "    default_backend masters_grpc",
        "",
        "backend masters_grpc",
        "    mode tcp",
        "    balance first",
        *_CHECK,
        # The same check on the web port, so a master's gRPC port is up exactly when its web port is.
        *(f"    server {m.name} {m.host}:{m.grpc_port} check port {m.web_port}" for m in masters),
    ]
    return "\n".join(lines) + "\n"


def check_config(path: Path, binary: Path | None = None) -> None:
    """Run `haproxy -c -f path`; raises HaproxyConfigError with its output when it refuses the file."""
    binary = binary or find_haproxy()
    done = subprocess.run([str(binary), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise HaproxyConfigError(f"{binary} refused {path} (exit {done.returncode}):\n{output}")


class Haproxy:
    """HAProxy as a child process in front of `masters`, its config written to `directory`."""

    def __init__(
        self,
        masters: Sequence[Backend],
        directory: Path,
        *,
        host: str = "127.0.0.1",
        web_port: int | None = None,
        grpc_port: int | None = None,
        check_interval_ms: int = 500,
        sink: LogSink | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        """Pick free ports where none are given and render the config; `start()` starts the process on
        `spawner`'s thread, or on one of its own until `stop()` (haproxy gets SIGTERM when that thread ends)."""
        self.masters = list(masters)
        self.directory = directory
        self.config_path = directory / CONFIG_NAME
        self.host = host
        self.web_port = web_port if web_port is not None else free_port(host)
        self.grpc_port = grpc_port if grpc_port is not None else free_port(host)
        self.config = haproxy_config(
            self.masters, self.web_port, self.grpc_port, host, check_interval_ms=check_interval_ms
        )
        self.name = HAPROXY  # the process's name in the lab's log
        self.process: ManagedProcess | None = None
        self._sink = sink
        self._spawner = spawner
        self._own_spawner: Spawner | None = None

    @property
    def web_url(self) -> str:
        """The web frontend's base URL (browsers, REST, Socket.IO)."""
        return f"http://{self.host}:{self.web_port}"

    @property
    def grpc_endpoint(self) -> str:
        """The gRPC frontend's host:port (workers' results)."""
        return f"{self.host}:{self.grpc_port}"

    def __enter__(self) -> Haproxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Write and validate the config, start haproxy and wait until both frontends accept connections.

        HAProxy counts every server as up until its checks say otherwise: for about half a second after the
        start, traffic may reach a master that does not lead (one binding no port refuses it, and the request
        is tried again as after a leader's death).
        """
        binary = find_haproxy()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config, encoding="utf-8")
        check_config(self.config_path, binary)
        # -db: foreground, one process; SIGTERM ends it at once (SIGUSR1 would wait for open tunnels).
        argv = [str(binary), "-db", "-f", str(self.config_path)]

        def spawn() -> ManagedProcess:
            return ManagedProcess(self.name, argv, env=os.environ, cwd=self.directory, sink=self._sink)

        # Not on the caller's thread: that may be a short-lived one (asyncio.to_thread's), whose end would stop it.
        if self._spawner is None:
            self._spawner = self._own_spawner = Spawner()
        self.process = self._spawner.call(spawn)
        ready = lambda: accepts_tcp(self.host, self.web_port) and accepts_tcp(self.host, self.grpc_port)  # noqa: E731
        try:
            wait_ready(f"{self.name} to accept connections", ready, [self.process], time.monotonic() + timeout, timeout)
        except BaseException:
            self.stop()  # `with` runs no __exit__ when __enter__ fails
            raise

    def stop(self, grace: float = 3.0) -> int | None:
        """SIGTERM, SIGKILL after `grace` seconds; the exit code (None if it never started). Idempotent."""
        code = self.process.stop(grace) if self.process is not None else None
        if self._own_spawner is not None:
            self._own_spawner.close()
            self._spawner = self._own_spawner = None
        return code
