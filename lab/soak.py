"""The soak: steady open-loop load near capacity for minutes, watching the master's memory."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lab.client import ChatClient
from lab.cluster import LocalCluster
from lab.measure import measurement_cluster
from lab.stats import percentile


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
            next_sample += 10
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
        "name": "soak",
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
    }


def soak(
    workers: int = 4,
    work_seconds: float = 1.0,
    load: float = 0.8,
    seconds: float = 600.0,
    warmup: float = 30.0,
    clients: int = 40,
) -> dict[str, Any]:
    """`load` x capacity (workers / work time) of Poisson arrivals for `seconds`; master RSS before and after."""
    rate = load * workers / work_seconds
    with measurement_cluster(workers, work_seconds) as cluster:
        return asyncio.run(_soak(cluster, rate, seconds, warmup, clients))
