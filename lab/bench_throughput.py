"""Benchmark `throughput`: the most answers per second the system sustains, with closed-loop clients."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from lab.client import ChatClient, Exchange
from lab.measure import figure, measurement_cluster, per_second
from lab.stats import percentile
from services.loop import run as run_loop

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


async def _closed_loop(url: str, clients: int, seconds: float, warmup: float) -> _Counted:
    counted = _Counted()
    window = (0.0, 0.0)  # the measured window, set once the clients are connected

    def connected() -> float:
        nonlocal window
        measure_from = time.monotonic() + warmup
        window = (measure_from, measure_from + seconds)
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
        counted = run_loop(_closed_loop(cluster.web_url, args.clients, args.seconds, args.warmup))
    answers = len(counted.answered_at_s)
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
    }


def summary(result: dict[str, Any]) -> str:
    """Answers per second and latency."""
    return (
        f"throughput with {result['workers']} workers and {result['clients']} closed-loop clients: "
        f"{result['answers_per_s']} answers/s ({result['answers']} in {result['seconds']:g} s), "
        f"latency p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms"
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
