"""The peer system of `lab bench peer` as child processes: a Redis of its own on a free port (no persistence)
and Celery workers (lab.bench.peer_celery) with a given number of worker processes in all."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from lab.bench.peer_celery import BACKEND_ENV, BROKER_ENV, make_app
from lab.paths import REPO_ROOT
from lab.system.ports import free_port
from lab.system.procs import ManagedProcess

POOLS = ("solo", "prefork")  # also the choices of bench_peer's --celery-pool
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
_FALLBACK_REDIS = Path("/usr/bin/redis-server")


def find_redis() -> Path | None:
    """The redis-server binary, or None when it is not installed."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    return _FALLBACK_REDIS if os.access(_FALLBACK_REDIS, os.X_OK) else None


@dataclass(frozen=True)
class CelerySystem:
    """A running Redis and Celery workers: the client app, the process groups and the pool's process ids."""

    app: Any
    groups: list[int]
    pool_pids: list[int]


def _quiet(name: str, line: str) -> None:
    """Log sink: the peer's logs are not part of the figures (ManagedProcess keeps a tail for errors)."""


def _explain(procs: list[ManagedProcess]) -> str:
    return "; ".join(f"{p.name} (exit {p.returncode}): {' | '.join(p.tail(5))}" for p in procs)


def _wait_redis(port: int, proc: ManagedProcess, deadline: float) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                if not proc.alive or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {_explain([proc])}") from None
                time.sleep(0.05)
    finally:
        client.close()


def _wait_workers(app: Any, processes: int, procs: list[ManagedProcess], deadline: float) -> list[int]:
    """Wait until the workers' pools have `processes` processes in all; their pids."""
    while True:
        stats = app.control.inspect(timeout=0.5).stats() or {}
        pids = sorted(int(pid) for s in stats.values() for pid in s.get("pool", {}).get("processes", []))
        if len(pids) >= processes:
            return pids
        if any(not p.alive for p in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"{len(pids)} of {processes} Celery processes ready: {_explain(procs)}")


def _worker_argvs(workers: int, pool: str) -> list[list[str]]:
    common = ["-m", "celery", "-A", "lab.bench.peer_celery", "worker", "--loglevel", "WARNING"]
    # No gossip, mingle or event heartbeats: chatter between Celery workers that our workers have no match for.
    common += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if pool == "prefork":
        return [[sys.executable, *common, "--pool", "prefork", "--concurrency", str(workers), "-n", "peer@%h"]]
    return [[sys.executable, *common, "--pool", "solo", "-n", f"peer{i}@%h"] for i in range(workers)]


@contextmanager
def celery_system(workers: int, pool: str = "solo", clients: int = 10, durable: bool = False) -> Iterator[CelerySystem]:
    """Start a Redis of our own on a free port and Celery workers with `workers` processes in all; stop both.

    Redis keeps nothing on disk unless `durable`: then every write goes to its append-only file, fsynced every
    second, which survives a killed Redis as our master's journal (SQLite WAL, synchronous=NORMAL) survives a
    killed master.
    """
    server = find_redis()
    if server is None:
        raise RuntimeError("redis-server not found: install it with `sudo apt-get install redis-server`")
    port = free_port()
    broker, backend = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
    env = {**os.environ, BROKER_ENV: broker, BACKEND_ENV: backend}
    deadline = time.monotonic() + READY_TIMEOUT_S
    procs: list[ManagedProcess] = []
    app: Any = None
    with tempfile.TemporaryDirectory(prefix="lab-peer-redis-") as data:
        try:
            argv = [str(server), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", data]
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"] if durable else ["--appendonly", "no"]
            argv += ["--daemonize", "no"]
            procs.append(ManagedProcess("redis", argv, env=env, cwd=REPO_ROOT, sink=_quiet))
            _wait_redis(port, procs[0], deadline)
            for i, argv in enumerate(_worker_argvs(workers, pool)):
                procs.append(ManagedProcess(f"celery-{i}", argv, env=env, cwd=REPO_ROOT, sink=_quiet))
            # A connection per client thread: with fewer, publishing clients would queue for one.
            app = make_app(broker, backend, pool_limit=clients + 2)
            pool_pids = _wait_workers(app, workers, procs, deadline)
            yield CelerySystem(app, [p.pid for p in procs], pool_pids)
        finally:
            if app is not None:
                app.close()
            celery_procs, redis_procs = procs[1:], procs[:1]
            for group in (celery_procs, redis_procs):  # workers first: a warm shutdown needs the broker
                for proc in group:
                    proc.terminate()
                stop_by = time.monotonic() + STOP_GRACE_S
                for proc in group:
                    proc.finish(stop_by)
