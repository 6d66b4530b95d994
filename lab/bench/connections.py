"""Benchmark `connections`: what idle connected users cost the master, in memory and in active users' latency.

One system (2 workers, zero work, the master's limits on connections lifted), three phases:

- A: `--active` closed-loop users for `--seconds`: latency p50/p99/max, answers/s, the master's RSS and CPU;
- B: `--idle` users connect and stay connected (lab.loadgen.idle_users: a WebSocket each, answering Engine.IO
  pings, offering permessage-deflate as browsers do); once all are in, the master's RSS (its growth divided by
  the idle users is the memory of one), then the same active users again;
- C: the idle users gone, the active users once more (drift: what the idle users left behind).

The idle users live in a child process (`python -m lab.loadgen.idle_users`, its CPU and RSS reported apart):
held in this process, 10,000 sockets share the event loop with the active users, whose answers then wait
behind the idle users' pings and status events, and the latencies measured would be partly this process's.
Measured: the idle users' own work is 3 % of a core at 3,000 and 6-8 % at 10,000 (pings and statuses); at 3,000
in one process the active users' p99 was not clearly worse (190 against 289 ms apart, on a busy machine), so
the separation costs nothing and keeps the client out of the figure as the idle users grow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from lab.analysis.stats import percentile
from lab.bench.common import figure
from lab.bench.language_figures import as_fleet
from lab.bench.procfs import group_cpu_seconds, group_pids, group_rss_mib
from lab.bench.throughput import measured_window
from lab.system.presets import measurement_cluster
from lab.system.workers import fleet_size
from services.loop import run as run_loop
from services.master.settings import MasterSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "connections"
HELP = "what idle connected users cost the master: memory per user, active users' latency with and without them"

WORKERS = 2
"""The default of `--workers FLEET`, which `lab bench` adds (lab.commands.fleet)."""

CONNECT_TIMEOUT_S = 300.0  # for all idle users to be in
SETTLE_S = 3.0  # after the idle users are in, before the master's RSS is read (status events, the allocator)
HEADROOM = 100  # connections allowed beyond the idle and active users (the dashboard, a health check)
PHASES = ("A", "B", "C")


def add_options(parser: argparse.ArgumentParser) -> None:
    """--idle, --active, --seconds, --warmup, --no-deflate, --skip-after (and `--workers`: see WORKERS)."""
    parser.add_argument("--idle", type=int, default=10_000, help="idle users connected during phase B")
    parser.add_argument("--active", type=int, default=10, help="closed-loop users in each phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds of each phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measured window")
    parser.add_argument("--no-deflate", action="store_true", help="idle users do not offer permessage-deflate")
    parser.add_argument("--skip-after", action="store_true", help="leave out phase C (after the idle users left)")


def socket_count(pgid: int) -> int:
    """How many sockets the processes of group `pgid` have open (the master's: its core and web front; its
    users' connections among them)."""
    count = 0
    for pid in group_pids(pgid):
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
            except OSError:
                continue
    return count


class IdleProcess:
    """`python -m lab.loadgen.idle_users` holding `count` idle users of `url` until `close`."""

    def __init__(self, url: str, count: int, deflate: bool) -> None:
        self.argv = [sys.executable, "-m", "lab.loadgen.idle_users", url, str(count)]
        self.argv += [] if deflate else ["--no-deflate"]
        self.proc: asyncio.subprocess.Process | None = None

    async def open(self) -> tuple[int, str]:
        """Start the users; (how many connected, the first failure's reason or "") once all are in or failed."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True
        )  # a process group of its own: its RSS is read as a group's
        assert self.proc.stdout is not None
        failure = ""
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), CONNECT_TIMEOUT_S)).decode().strip()
            if not line:
                raise RuntimeError(f"idle users exited ({await self.proc.wait()}) before they all connected")
            if line.startswith("failed"):
                failure = line
            elif line.startswith("connected"):
                return int(line.split()[1]), failure

    async def close(self) -> None:
        """Close every idle user (the child ends when its stdin closes)."""
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def _phase(url: str, args: argparse.Namespace, master_pid: int, idle_pid: int | None = None) -> dict[str, Any]:
    """The active users for `warmup` plus `seconds`: latencies, answers/s, the master's CPU and RSS (and the CPU
    of the idle users' process `idle_pid`: on a small machine it competes with the master)."""
    started = time.monotonic()
    # The master's process group: its web front too (WEB_PROCESS=true).
    cpu_before = (group_cpu_seconds(master_pid), group_cpu_seconds(idle_pid) if idle_pid else 0.0)
    counted = await measured_window(url, args.active, args.seconds, args.warmup)
    elapsed = max(1e-9, time.monotonic() - started)
    cpu_share = (group_cpu_seconds(master_pid) - cpu_before[0]) / elapsed
    idle_share = (group_cpu_seconds(idle_pid) - cpu_before[1]) / elapsed if idle_pid else 0.0
    latencies = counted.latencies_ms
    return {
        "idle_client_cpu_percent": round(100 * idle_share, 1),
        "answers_per_s": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
        "master_cpu_percent": round(100 * cpu_share, 1),
        "master_rss_mib": round(group_rss_mib(master_pid), 1),
        "latencies_ms": [round(v, 2) for v in latencies],
    }


async def _run(url: str, args: argparse.Namespace, master_pid: int) -> dict[str, Any]:
    result: dict[str, Any] = {"phases": {}}
    result["phases"]["A"] = await _phase(url, args, master_pid)
    await asyncio.sleep(SETTLE_S)
    rss_before = group_rss_mib(master_pid)
    sockets_before = socket_count(master_pid)
    idle = IdleProcess(url, args.idle, not args.no_deflate)
    started = time.monotonic()
    try:
        connected, failure = await idle.open()
        result["connect_seconds"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(SETTLE_S)
        result.update(
            idle_connected=connected,
            idle_failure=failure,
            master_sockets_added=socket_count(master_pid) - sockets_before,
            master_rss_before_mib=round(rss_before, 1),
            master_rss_idle_mib=round(group_rss_mib(master_pid), 1),
            idle_client_rss_mib=round(group_rss_mib(idle.proc.pid) if idle.proc else 0.0, 1),
        )
        result["phases"]["B"] = await _phase(url, args, master_pid, idle.proc.pid if idle.proc else None)
    finally:
        await idle.close()
    if not args.skip_after:
        await asyncio.sleep(SETTLE_S)
        result["phases"]["C"] = await _phase(url, args, master_pid)
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Phases A, B (with `idle` users connected) and C of `active` closed-loop users on one system; the master's
    memory per idle user and the active users' p99 with the idle users over without."""
    fleet = as_fleet(args.workers)
    most = args.idle + args.active + HEADROOM
    env = MasterSettings.env_of(max_connections=most, max_connections_per_address=most)
    with measurement_cluster(workers=dict(fleet), extra_env=env) as cluster:
        master_pid = cluster.processes["master"].pid
        measured = run_loop(_run(cluster.web_url, args, master_pid))
    a, b = measured["phases"]["A"], measured["phases"]["B"]
    added_mib = measured["master_rss_idle_mib"] - measured["master_rss_before_mib"]
    return {
        "name": NAME,
        "workers": fleet_size(fleet),
        "idle": args.idle,
        "active": args.active,
        "seconds": args.seconds,
        "deflate": not args.no_deflate,
        **measured,
        "master_rss_added_mib": round(added_mib, 1),
        "kib_per_idle_user": round(1024 * added_mib / max(1, measured["idle_connected"]), 1),
        "p99_ratio": round(b["p99_ms"] / a["p99_ms"], 2) if a["p99_ms"] > 0 else None,
    }


def summary(result: dict[str, Any]) -> str:
    """Memory per idle user, and each phase's latency."""
    phases = result["phases"]
    lines = [
        f"connections: {result['idle_connected']} of {result['idle']} idle users connected in "
        f"{result['connect_seconds']} s ({result['master_sockets_added']} sockets more in the master"
        + (f"; {result['idle_failure']}" if result.get("idle_failure") else "")
        + f"); master RSS {result['master_rss_before_mib']} -> {result['master_rss_idle_mib']} MiB "
        f"(+{result['master_rss_added_mib']} MiB, {result['kib_per_idle_user']} KiB per idle user); "
        f"the idle users' own process {result['idle_client_rss_mib']} MiB",
    ]
    names = {"A": "without idle users", "B": "with idle users", "C": "after they left"}
    for phase, figures in phases.items():
        lines.append(
            f"{phase} ({names[phase]}), {result['active']} active users: {figures['answers_per_s']} answers/s, "
            f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms, "
            f"master CPU {figures['master_cpu_percent']} %, RSS {figures['master_rss_mib']} MiB"
            + (f", idle users' process CPU {figures['idle_client_cpu_percent']} %" if phase == "B" else "")
        )
    lines.append(f"p99 with idle users / without: {result['p99_ratio']}")
    return "\n".join(lines)


def chart(result: dict[str, Any]) -> Figure:
    """Each phase's latencies (sorted: a CDF), and the master's RSS through the phases."""
    fig, (cdf, memory) = figure(1, 2)
    for phase, figures in result["phases"].items():
        values = sorted(figures.get("latencies_ms", []))
        if values:
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            cdf.plot(values, fractions, label=f"{phase}: p99 {figures['p99_ms']} ms")
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms)")
    cdf.set_ylabel("fraction of answers")
    cdf.set_title(f"{result['active']} active users, {result['idle_connected']} idle in B")
    cdf.legend(fontsize="small")
    labels = ["before", f"{result['idle_connected']} idle", *(f"end of {p}" for p in result["phases"])]
    values = [
        result["master_rss_before_mib"],
        result["master_rss_idle_mib"],
        *(f["master_rss_mib"] for f in result["phases"].values()),
    ]
    memory.bar(range(len(values)), values, color="tab:blue")
    memory.set_xticks(range(len(values)), labels, fontsize="small")
    memory.set_ylabel("master RSS (MiB)")
    memory.set_title(f"Master memory: {result['kib_per_idle_user']} KiB per idle user")
    return fig
