"""Benchmark `throughput`: the most answers per second the system sustains, with closed-loop clients."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.analysis.stats import percentile
from lab.bench.common import figure, per_second
from lab.loadgen.client import ChatClient, Exchange
from lab.system.presets import measurement_cluster
from lab.system.procs import cpu_seconds
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NAME = "throughput"
HELP = "answers per second sustained by closed-loop clients, zero work, offline model at zero latency"


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --clients, --seconds, --warmup."""
    parser.add_argument("--workers", type=int, default=4, help="workers")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients, each asking again at once")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the measured duration")


@dataclass
class _Counted:
    answered_at_s: list[float] = field(default_factory=list)  # since the start of the measured window
    latencies_ms: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU time spent in the window, by part


def _cpu_now(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of the broker, the master, all workers together, and the clients (this process)."""
    workers = sum(cpu_seconds(pid) for name, pid in pids.items() if name.startswith("worker"))
    named = {part: cpu_seconds(pids[part]) for part in ("master", "mosquitto") if part in pids}
    return {**named, "workers": workers, "clients": time.process_time()}


async def closed_loop(
    url: str,
    clients: int,
    connected: Callable[[], float],
    answered: Callable[[Exchange, float], None],
    answer_timeout_s: float = 60.0,
) -> None:
    """`clients` users each ask, wait for the answer and ask again. Once all are connected, `connected()`
    says until when (time.monotonic()) to keep asking; `answered(exchange, when)` hears of every answer."""
    users = [ChatClient(url) for _ in range(clients)]
    try:
        await asyncio.gather(*(u.connect() for u in users))
        stop_at = connected()

        async def run(user: ChatClient) -> None:
            i = 0
            while time.monotonic() < stop_at:
                exchange = await user.ask(f"throughput probe {i}", timeout=30)
                i += 1
                await user.wait_answers(i, timeout=answer_timeout_s)
                answered(exchange, exchange.answered_at or time.monotonic())

        await asyncio.gather(*(run(u) for u in users))
    finally:
        await asyncio.gather(*(u.close() for u in users), return_exceptions=True)


async def _closed_loop(
    url: str, clients: int, seconds: float, warmup: float, pids: Mapping[str, int] | None = None
) -> _Counted:
    counted = _Counted()
    window = (0.0, 0.0)  # the measured window, set once the clients are connected
    loop = asyncio.get_running_loop()

    def mark_cpu(start: dict[str, float]) -> None:
        if not start:
            start.update(_cpu_now(pids or {}))
        else:
            counted.cpu_s = {part: spent - start[part] for part, spent in _cpu_now(pids or {}).items()}

    def connected() -> float:
        nonlocal window
        measure_from = time.monotonic() + warmup
        window = (measure_from, measure_from + seconds)
        start: dict[str, float] = {}
        loop.call_later(warmup, mark_cpu, start)
        loop.call_later(warmup + seconds, mark_cpu, start)
        return window[1]

    def answered(exchange: Exchange, done: float) -> None:
        if window[0] <= done < window[1]:
            counted.answered_at_s.append(done - window[0])
            counted.latencies_ms.append((done - exchange.sent_at) * 1000)

    await closed_loop(url, clients, connected, answered)
    return counted


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`clients` users each ask, wait for the answer and ask again; answers received in the `seconds` after
    `warmup`, divided by `seconds`."""
    with measurement_cluster(workers=args.workers) as cluster:
        pids = {name: proc.pid for name, proc in cluster.processes.items()}
        counted = run_loop(_closed_loop(cluster.web_url, args.clients, args.seconds, args.warmup, pids))
    answers = len(counted.answered_at_s)
    # Where the CPU goes, per answer: on 2 cores, N answers/s leave 2000/N ms of CPU per answer in all.
    cpu_ms = {part: round(1000 * spent / max(1, answers), 2) for part, spent in counted.cpu_s.items()}
    return {
        "name": NAME,
        "workers": args.workers,
        "clients": args.clients,
        "seconds": args.seconds,
        "answers": answers,
        "answers_per_s": round(answers / args.seconds, 1),
        "latency_p50_ms": round(percentile(counted.latencies_ms, 50), 1),
        "latency_p99_ms": round(percentile(counted.latencies_ms, 99), 1),
        "answers_per_second": per_second(counted.answered_at_s, args.seconds - 1e-9),
        "cpu_ms_per_answer": {**cpu_ms, "total": round(sum(cpu_ms.values()), 2)},
    }


def summary(result: dict[str, Any]) -> str:
    """Answers per second and latency."""
    cpu = result.get("cpu_ms_per_answer", {})
    return (
        f"throughput with {result['workers']} workers and {result['clients']} closed-loop clients: "
        f"{result['answers_per_s']} answers/s ({result['answers']} in {result['seconds']:g} s), "
        f"latency p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms"
        + ("\nCPU per answer (ms): " + ", ".join(f"{part} {ms}" for part, ms in cpu.items()) if cpu else "")
    )


def chart(result: dict[str, Any]) -> Figure:
    """Answers in each second of the measured window, with the mean."""
    fig, (ax,) = figure()
    counts = result.get("answers_per_second", [])
    ax.bar(range(len(counts)), counts, width=0.9, align="edge", color="tab:blue", label="answers in the second")
    ax.axhline(result["answers_per_s"], color="tab:red", linestyle="--", label=f"mean {result['answers_per_s']}/s")
    ax.set_xlabel("second of the measured window")
    ax.set_ylabel("answers")
    ax.set_title(f"Throughput, {result['workers']} workers, {result['clients']} clients")
    ax.legend(fontsize="small")
    return fig
