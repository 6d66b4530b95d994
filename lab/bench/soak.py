"""Benchmark `soak`: steady open-loop load near capacity for minutes, watching the master's memory."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from lab.analysis.stats import percentile
from lab.bench.common import figure
from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from lab.system.presets import measurement_cluster
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NAME = "soak"
HELP = "minutes of Poisson arrivals near capacity: answers, latency, the master's memory every 10 s"
SAMPLE_EVERY_S = 10


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --work-seconds, --load, --seconds, --warmup, --clients."""
    parser.add_argument("--workers", type=int, default=4, help="workers")
    parser.add_argument("--work-seconds", type=float, default=1.0, help="simulated work per task")
    parser.add_argument("--load", type=float, default=0.8, help="arrival rate as a fraction of capacity")
    parser.add_argument("--seconds", type=float, default=600.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of load before the first RSS figure")
    parser.add_argument("--clients", type=int, default=40, help="users the questions are spread over")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _soak(cluster: LocalCluster, rate: float, seconds: float, warmup: float, clients: int) -> dict[str, Any]:
    users = [ChatClient(cluster.web_url) for _ in range(clients)]
    await asyncio.gather(*(u.connect() for u in users))
    master_pid = cluster.processes["master"].pid
    rng = random.Random(11)
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    end = start + warmup + seconds
    sent = 0
    asks: list[asyncio.Task[Any]] = []
    bar = tqdm(total=round(warmup + seconds), desc="soak", unit="s")
    next_sample = start
    while (now := time.monotonic()) < end:
        if now >= next_sample:
            samples.append((now - start, rss_mb(master_pid)))
            next_sample += SAMPLE_EVERY_S
            bar.n = round(now - start)
            bar.refresh()
        # Open loop: Poisson arrivals at `rate`, whatever the system does (no coordinated omission).
        await asyncio.sleep(rng.expovariate(rate))
        user = users[sent % clients]
        asks.append(asyncio.get_running_loop().create_task(user.ask(f"soak question {sent}", timeout=30)))
        sent += 1
    bar.close()
    await asyncio.gather(*asks, return_exceptions=True)  # every question acknowledged (or refused) first
    await asyncio.gather(*(u.wait_answers(len(u.exchanges), timeout=120) for u in users), return_exceptions=True)
    samples.append((time.monotonic() - start, rss_mb(master_pid)))
    exchanges = [e for u in users for e in u.exchanges.values()]
    latencies = [(e.answered_at - e.sent_at) for e in exchanges if e.answered_at is not None]
    await asyncio.gather(*(u.close() for u in users))
    at_start = next(rss for t, rss in samples if t >= warmup)
    at_end = samples[-1][1]
    return {
        "name": NAME,
        "rate_per_s": rate,
        "seconds": seconds,
        "sent": sent,
        "accepted": len(exchanges),
        "answered": len(latencies),
        "unanswered": len(exchanges) - len(latencies),
        "latency_p50_s": round(percentile(latencies, 50), 2),
        "latency_p99_s": round(percentile(latencies, 99), 2),
        "master_rss_start_mb": round(at_start, 1),
        "master_rss_end_mb": round(at_end, 1),
        "rss_growth_pct": round(100 * (at_end - at_start) / at_start, 1),
        "rss_samples_mb": [round(r, 1) for _, r in samples],
        "rss_sampled_at_s": [round(t, 1) for t, _ in samples],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`load` x capacity (workers / work time) of Poisson arrivals for `warmup` + `seconds`; the master's RSS
    every 10 s, at the end of the warm-up against after the last answer."""
    rate = args.load * args.workers / args.work_seconds
    with measurement_cluster(args.workers, args.work_seconds) as cluster:
        return run_loop(_soak(cluster, rate, args.seconds, args.warmup, args.clients))


def summary(result: dict[str, Any]) -> str:
    """Answers, latency and memory growth."""
    return (
        f"soak at {result['rate_per_s']:g} questions/s for {result['seconds']:g} s: {result['sent']} sent, "
        f"{result['answered']} answered, {result['unanswered']} unanswered; latency p50 {result['latency_p50_s']} s, "
        f"p99 {result['latency_p99_s']} s\nmaster RSS {result['master_rss_start_mb']} MiB after the warm-up, "
        f"{result['master_rss_end_mb']} MiB at the end ({result['rss_growth_pct']:+g}%)"
    )


def chart(result: dict[str, Any]) -> Figure:
    """The master's resident memory over the run."""
    fig, (ax,) = figure()
    samples = result["rss_samples_mb"]
    times = result.get("rss_sampled_at_s") or [SAMPLE_EVERY_S * i for i in range(len(samples))]
    ax.plot(times, samples, marker="o")
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel("master RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Soak at {result['rate_per_s']:g} questions/s")
    return fig
