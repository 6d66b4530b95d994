"""Health checks for containers: `python -m services.master --check` and `python -m services.worker --check`.

The master is asked over HTTP (its /healthz says whether it is connected to the broker). A worker has no
port: while it runs it keeps a heartbeat file, and its check reads that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.5  # well inside the 5 s a Swarm health check is given
HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.2  # how soon a connection that came or went shows in the file
STALE_AFTER_BEATS = 3  # a heartbeat older than this many intervals means a dead or hung worker


class Unhealthy(Exception):
    """The service checked is not able to do its job; the message says why, in one line."""


def run_check(probe: Callable[[], str]) -> int:
    """Run `probe` and turn it into a health check's exit code: 0 healthy, 1 not (never 2, which Docker
    reserves); one line on stdout when healthy, on stderr when not."""
    try:
        line = probe()
    except Unhealthy as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a check must answer 0 or 1, never a traceback
        print(f"unhealthy: the check itself failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"healthy: {line}")
    return 0


def local_address(bind_host: str) -> str:
    """Where this machine reaches a server bound to `bind_host` (a wildcard address means loopback)."""
    if bind_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind_host == "::":
        return "::1"
    return bind_host


# -- master ---------------------------------------------------------------------------------------------


def check_master(web_host: str, web_port: int, grpc_host: str, grpc_port: int, timeout: float = CHECK_TIMEOUT_S) -> str:
    """Healthy = /healthz answers 200 (the master is connected to the broker, so it can hand out tasks)
    and the gRPC result server accepts connections (so it can take results); raise Unhealthy otherwise."""
    host = local_address(web_host)
    where = f"{host}:{web_port}"
    conn = http.client.HTTPConnection(host, web_port, timeout=timeout)  # no proxy: this is our own port
    try:
        conn.request("GET", "/healthz", headers={"Accept": "application/json"})
        response = conn.getresponse()
        status, raw = response.status, response.read(4096)
    except ConnectionRefusedError:
        raise Unhealthy(f"nothing listens on {where}: the master is not running") from None
    except TimeoutError:
        raise Unhealthy(
            f"GET http://{where}/healthz: no answer within {timeout:g} s (master hung or overloaded)"
        ) from None
    except (OSError, http.client.HTTPException) as e:
        raise Unhealthy(f"GET http://{where}/healthz failed: {e}") from None
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "mqtt" not in body:
        raise Unhealthy(f"GET http://{where}/healthz answered {status} with no master health report")
    if status == 200 and body.get("standby") is True:
        return f"standby master on {where}: waiting to lead"
    if status != 200 or body.get("mqtt") is not True:
        raise Unhealthy(f"the master is not connected to the MQTT broker (GET /healthz answered {status})")
    grpc_where = f"{local_address(grpc_host)}:{grpc_port}"
    try:
        socket.create_connection((local_address(grpc_host), grpc_port), timeout=min(timeout, 1.0)).close()
    except OSError as e:
        raise Unhealthy(f"the master's gRPC result server on {grpc_where} does not accept connections ({e})") from None
    return f"master on {where} is connected to MQTT and takes results on {grpc_where}"


# -- worker ---------------------------------------------------------------------------------------------


class Heartbeat:
    """The heartbeat file of a running worker: rewritten every `interval` seconds with whether the worker
    is connected to the broker, removed when the worker stops cleanly."""

    def __init__(
        self, path: str, worker_id: str, connected: Callable[[], bool], interval: float = HEARTBEAT_SECONDS
    ) -> None:
        self.path = Path(path)
        self.worker_id = worker_id
        self.interval = interval
        self._connected = connected
        # A write still running in its thread must not bring the file back after close() removed it.
        self._lock = threading.Lock()
        self._closed = False
        self._failing = False

    async def run(self) -> None:
        """Forever: write the file, off the event loop, every interval and as soon as the connection comes
        or goes. The writes are scheduled by the event loop, so a hung loop stops them and the file goes
        stale."""
        ticks = max(1, round(self.interval / POLL_SECONDS))
        while True:
            connected = self._connected()
            await asyncio.to_thread(self.write, connected)
            for _ in range(ticks):
                await asyncio.sleep(self.interval / ticks)
                if self._connected() != connected:
                    break

    def write(self, connected: bool) -> None:
        """Replace the file atomically (a temporary file, then os.replace); a failure is logged once."""
        beat = {"worker_id": self.worker_id, "connected": connected, "time": time.time(), "pid": os.getpid()}
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with self._lock:
            if self._closed:
                return
            try:
                temporary.write_text(json.dumps(beat), encoding="utf-8")
                os.replace(temporary, self.path)
            except OSError as e:
                if not self._failing:
                    log.warning("cannot write the health file %s: %s", self.path, e)
                self._failing = True
                with contextlib.suppress(OSError):
                    temporary.unlink()
                return
            if self._failing:
                log.info("health file %s written again", self.path)
            self._failing = False

    def close(self) -> None:
        """Stop writing and remove the file: a worker that stopped is not healthy."""
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError):
                self.path.unlink()


def check_worker(path: str, interval: float = HEARTBEAT_SECONDS) -> str:
    """Healthy = the heartbeat file is fresh (younger than STALE_AFTER_BEATS intervals) and says the worker
    is connected to the broker; raise Unhealthy otherwise."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Unhealthy(f"no heartbeat file {path}: the worker is not running or has not started yet") from None
    except OSError as e:
        raise Unhealthy(f"cannot read the heartbeat file {path}: {e.strerror}") from None
    try:
        beat = json.loads(raw)
        worker_id, connected, written = str(beat["worker_id"]), beat["connected"], float(beat["time"])
    except (ValueError, TypeError, KeyError):
        raise Unhealthy(f"the heartbeat file {path} is not a worker's heartbeat") from None
    age = time.time() - written
    limit = STALE_AFTER_BEATS * interval
    if not -limit <= age <= limit:  # a clock set back must not keep a dead worker's file fresh
        raise Unhealthy(f"worker {worker_id}: last heartbeat {age:.1f} s ago (> {limit:g} s): gone or hung")
    if connected is not True:
        raise Unhealthy(f"worker {worker_id} is not connected to the MQTT broker")
    return f"worker {worker_id} is connected to MQTT (heartbeat {max(age, 0.0):.1f} s ago)"
