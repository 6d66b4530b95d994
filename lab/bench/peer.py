"""Benchmark `peer`: ours against Celery with Redis, the same zero-work job side by side in one run.

Both systems get the same number of worker processes and the same closed-loop clients, in this process, on
this machine: ours (lab.system.measurement_cluster), then Celery (lab.bench.peer_celery, a Redis of its own on
a free port), and again, `--rounds` times in all (default 2: ours, Celery, ours, Celery), so that a drift of
this shared machine weighs on both sides alike and a reader sees how far two runs of one side differ. Besides
answers per second and latency, the figures say how much CPU the clients and each system used in the measured
window, so a reader can tell which side the machine was spent on. Every run's figures are kept; a side's
headline figures (``ours_per_s``, ``celery_p99_ms``, ..., and ``ratio``) are the mean of its runs (see
lab.bench.peer_figures).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.analysis.stats import percentile
from lab.bench.common import add_journal_option
from lab.bench.peer_figures import SIDES, ratios, side_figures
from lab.bench.peer_figures import chart as chart
from lab.bench.peer_figures import summary as summary
from lab.bench.throughput import closed_loop
from lab.loadgen.client import Exchange
from lab.system.presets import measurement_cluster
from services.loop import run as run_loop

NAME = "peer"
HELP = "ours against Celery+Redis: the same zero-work job, workers and closed-loop clients, in alternating rounds"

ANSWER_TIMEOUT_S = 60.0


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --clients, --seconds, --warmup, --rounds, --celery-pool, --redis-durable."""
    parser.add_argument("--workers", type=int, default=4, help="worker processes of each system")
    parser.add_argument("--clients", type=int, default=50, help="closed-loop clients, one question at a time each")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds of each system")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs of each system, alternating (ours, Celery, ours, ...); the headline figures are their mean",
    )
    parser.add_argument(
        "--celery-pool",
        choices=("solo", "prefork"),
        default="solo",
        help="solo: N single-process Celery workers (like our N workers); prefork: 1 worker with N children",
    )
    add_journal_option(parser)
    parser.add_argument(
        "--redis-durable",
        action="store_true",
        help="Redis writes an append-only file (fsync every second), as durable as our journal; default: memory",
    )


# -- what both systems share --------------------------------------------------------------------------------


def group_cpu_s(groups: Collection[int]) -> float:
    """CPU seconds (user + system) used so far by the live processes of these process groups (Linux /proc)."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # After "pid (comm) ": state, ppid, pgrp, ... utime and stime are the 14th and 15th fields.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in groups:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> float:
    """CPU seconds all cores spent busy since boot, every process included (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """What one system did for the closed-loop clients: counted in the measured window, and who worked."""

    groups: Collection[int]
    warmup: float
    seconds: float
    measure_from: float = 0.0
    stop_at: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    by_worker: Counter[str] = field(default_factory=Counter)  # every answer, warm-up included
    worker_ids: list[str] = field(default_factory=list)  # the system's workers (Celery: its pool's pids)
    client_cpu_s: float = 0.0
    system_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0
    _cpu_start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def begin(self) -> None:
        """Start the clock: warm-up from now, then the measured window."""
        self.measure_from = time.monotonic() + self.warmup
        self.stop_at = self.measure_from + self.seconds

    def answered(self, worker: str, sent_at: float, done_at: float) -> None:
        """One answer: counted when it came in the measured window."""
        self.by_worker[worker] += 1
        if self.measure_from <= done_at < self.stop_at:
            self.latencies_ms.append((done_at - sent_at) * 1000)

    def cpu_mark(self, end: bool) -> None:
        """Note the CPU used so far by this process (the clients), the system's processes and the machine."""
        now = (time.process_time(), group_cpu_s(self.groups), machine_cpu_s())
        if end:
            self.client_cpu_s, self.system_cpu_s, self.machine_cpu_s = (
                b - a for a, b in zip(self._cpu_start, now, strict=True)
            )
        else:
            self._cpu_start = now

    def figures(self) -> dict[str, Any]:
        """The figures of this phase (one run of one system)."""
        seconds, answers = self.seconds, len(self.latencies_ms)
        per_answer = 1000 / answers if answers else math.nan
        return {
            "per_s": round(answers / seconds, 1),
            "p50_ms": round(percentile(self.latencies_ms, 50), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "answers": answers,
            # CPU in % of one core (the machine has os.cpu_count() of them), and in ms per answer.
            "client_cpu_pct": round(100 * self.client_cpu_s / seconds, 1),
            "system_cpu_pct": round(100 * self.system_cpu_s / seconds, 1),
            "machine_cpu_pct": round(100 * self.machine_cpu_s / seconds, 1),
            "client_cpu_ms_per_answer": round(self.client_cpu_s * per_answer, 2),
            "system_cpu_ms_per_answer": round(self.system_cpu_s * per_answer, 2),
            "worker_ids": sorted(self.worker_ids),
            "tasks_by_worker": dict(sorted(self.by_worker.items())),
        }


# -- ours ---------------------------------------------------------------------------------------------------


async def closed_loop_ours(url: str, clients: int, phase: Phase) -> None:
    """`clients` closed-loop users of our system at `url`, counted into `phase` (CPU marked at its window)."""
    started = asyncio.Event()

    def connected() -> float:
        phase.begin()
        started.set()
        return phase.stop_at

    def answered(exchange: Exchange, done: float) -> None:
        assert exchange.answer is not None
        phase.answered(exchange.answer.workerId, exchange.sent_at, done)

    async def mark() -> None:
        await started.wait()
        await asyncio.sleep(max(0.0, phase.measure_from - time.monotonic()))
        phase.cpu_mark(end=False)
        await asyncio.sleep(max(0.0, phase.stop_at - time.monotonic()))
        phase.cpu_mark(end=True)

    marking = asyncio.create_task(mark())
    try:
        await closed_loop(url, clients, connected, answered, ANSWER_TIMEOUT_S)
        await marking
    finally:
        marking.cancel()


def measure_ours(workers: int, clients: int, seconds: float, warmup: float, journal: str = "sqlite") -> Phase:
    """Our system with `workers` zero-work workers under `clients` closed-loop Socket.IO clients (`journal`:
    one master, or standby masters on etcd behind HAProxy)."""
    with measurement_cluster(workers=workers, journal=journal) as cluster:
        phase = Phase({p.pid for p in cluster.processes.values()}, warmup, seconds, worker_ids=cluster.worker_ids)
        run_loop(closed_loop_ours(cluster.web_url, clients, phase))
    return phase


# -- Celery -------------------------------------------------------------------------------------------------


def _celery_clients(app: Any, clients: int, phase: Phase) -> None:
    from lab.bench.peer_celery import TASK_NAME  # Celery loads only when this benchmark runs

    task = app.tasks[TASK_NAME]
    lock = threading.Lock()
    failed = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        i = 0
        try:
            while time.monotonic() < phase.stop_at and not failed.is_set():
                sent = time.monotonic()
                out = task.apply_async((f"throughput probe {i}",)).get(timeout=ANSWER_TIMEOUT_S)
                done = time.monotonic()
                i += 1
                with lock:
                    phase.answered(str(out["pid"]), sent, done)
        except BaseException as error:
            errors.append(error)
            failed.set()

    threads = [threading.Thread(target=run, name=f"peer-client-{k}", daemon=True) for k in range(clients)]
    phase.begin()
    for thread in threads:
        thread.start()
    if not failed.wait(max(0.0, phase.measure_from - time.monotonic())):
        phase.cpu_mark(end=False)
        if not failed.wait(max(0.0, phase.stop_at - time.monotonic())):
            phase.cpu_mark(end=True)
    for thread in threads:
        thread.join(ANSWER_TIMEOUT_S + 5)
    if errors:
        raise RuntimeError(f"a Celery client failed: {errors[0]!r}") from errors[0]


def measure_celery(
    workers: int, clients: int, seconds: float, warmup: float, pool: str = "solo", durable: bool = False
) -> Phase:
    """Celery with Redis, `workers` worker processes, under `clients` closed-loop client threads."""
    from lab.bench.peer_system import celery_system  # Celery and redis load only when this benchmark runs

    with celery_system(workers, pool, clients, durable) as system:
        phase = Phase(system.groups, warmup, seconds, worker_ids=[str(pid) for pid in system.pool_pids])
        _celery_clients(system.app, clients, phase)
    # The pids the tasks returned prove they ran in the workers' pool, not eagerly in the client.
    off_pool = set(phase.by_worker) - set(phase.worker_ids)
    if off_pool:
        raise RuntimeError(f"tasks ran outside the Celery pool {phase.worker_ids}: pids {sorted(off_pool)}")
    return phase


# -- the benchmark ------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Ours, then Celery, `rounds` times: `workers` worker processes each, `clients` closed-loop clients asking
    one question at a time for `seconds` after `warmup`; answers per second, latency, and CPU used by each side,
    for every run and as the mean of each side's runs."""
    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {args.rounds}")
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    started = time.monotonic()
    for round_ in range(1, args.rounds + 1):
        for side in SIDES:
            at = time.monotonic() - started
            if side == "ours":
                phase = measure_ours(args.workers, args.clients, args.seconds, args.warmup, args.journal)
            else:
                pool, durable = args.celery_pool, args.redis_durable
                phase = measure_celery(args.workers, args.clients, args.seconds, args.warmup, pool, durable)
            # started_s: when the run began, from the first run's start (the order they ran in).
            runs[side].append({"round": round_, "started_s": round(at, 1), **phase.figures()})
    result: dict[str, Any] = {
        "name": NAME,
        "workers": args.workers,
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "celery_pool": args.celery_pool,
        "redis_durable": args.redis_durable,
        "journal": args.journal,
        **side_figures("ours", runs["ours"]),
        **side_figures("celery", runs["celery"]),
    }
    result.update(ratios(result))
    return result
