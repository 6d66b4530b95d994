"""Benchmarks of the running system; each writes its figures as JSON under data/bench/."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.chaos import faults_run
from lab.client import ChatClient
from lab.measure import machine, measurement_cluster
from lab.soak import soak
from lab.stats import percentile

BENCH_DIR = Path(__file__).resolve().parents[1] / "data" / "bench"


async def _overhead(url: str, questions: int, warmup: int) -> list[float]:
    overheads: list[float] = []
    async with ChatClient(url) as user:
        for i in range(warmup + questions):
            exchange = await user.ask(f"overhead probe {i}")
            await user.wait_answers(i + 1, timeout=30)
            answer = exchange.answer
            assert answer is not None and exchange.answered_at is not None
            if i >= warmup:
                total_ms = (exchange.answered_at - exchange.sent_at) * 1000
                overheads.append(total_ms - float(answer["processingTime"]))
    return overheads


def overhead(questions: int = 300, warmup: int = 20) -> dict[str, Any]:
    """End-to-end latency minus processing_time_ms, one question at a time, no work, no model latency."""
    with measurement_cluster(workers=1) as cluster:
        values = asyncio.run(_overhead(cluster.web_url, questions, warmup))
    return {
        "name": "overhead",
        "questions": questions,
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
        "max_ms": round(max(values), 2),
    }


async def _closed_loop(url: str, clients: int, seconds: float, warmup: float) -> tuple[int, float, list[float]]:
    users = [ChatClient(url) for _ in range(clients)]
    await asyncio.gather(*(u.connect() for u in users))
    counted = 0
    latencies: list[float] = []
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def run(user: ChatClient) -> None:
        nonlocal counted
        i = 0
        while time.monotonic() < stop_at:
            exchange = await user.ask(f"throughput probe {i}", timeout=30)
            i += 1
            await user.wait_answers(i, timeout=60)
            done = exchange.answered_at or time.monotonic()
            if measure_from <= done < stop_at:
                counted += 1
                latencies.append((done - exchange.sent_at) * 1000)

    await asyncio.gather(*(run(u) for u in users))
    await asyncio.gather(*(u.close() for u in users))
    return counted, seconds, latencies


def throughput(workers: int = 4, clients: int = 50, seconds: float = 20.0, warmup: float = 3.0) -> dict[str, Any]:
    """Highest sustained answers per second: closed-loop clients, zero work, offline model."""
    with measurement_cluster(workers=workers) as cluster:
        counted, duration, latencies = asyncio.run(_closed_loop(cluster.web_url, clients, seconds, warmup))
    return {
        "name": "throughput",
        "workers": workers,
        "clients": clients,
        "seconds": duration,
        "answers": counted,
        "answers_per_s": round(counted / duration, 1),
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p99_ms": round(percentile(latencies, 99), 1),
    }


async def _burst(url: str, questions: int) -> tuple[float, list[ChatClient]]:
    users = [ChatClient(url) for _ in range(questions)]
    await asyncio.gather(*(u.connect() for u in users))
    start = time.monotonic()
    await asyncio.gather(*(u.ask(f"burst question {i}") for i, u in enumerate(users)))
    await asyncio.gather(*(u.wait_answers(1, timeout=600) for u in users))
    elapsed = time.monotonic() - start
    await asyncio.sleep(0.5)  # a duplicate answer would arrive right after
    await asyncio.gather(*(u.close() for u in users))
    return elapsed, users


def burst(workers: int = 4, questions: int = 40, work_seconds: float = 1.0) -> dict[str, Any]:
    """`questions` users ask at the same moment: total time, answers per question, tasks per worker."""
    with measurement_cluster(workers=workers, work_seconds=work_seconds) as cluster:
        elapsed, users = asyncio.run(_burst(cluster.web_url, questions))
    answers = [a for u in users for e in u.exchanges.values() for a in e.answers]
    per_worker = Counter(str(a["workerId"]) for a in answers)
    ideal = -(-questions // workers) * work_seconds
    return {
        "name": "burst",
        "workers": workers,
        "questions": questions,
        "work_seconds": work_seconds,
        "answered": len({str(a["taskId"]) for a in answers}),
        "duplicates": len(answers) - len({str(a["taskId"]) for a in answers}),
        "elapsed_s": round(elapsed, 2),
        "ideal_s": ideal,
        "tasks_per_worker_max": max(per_worker.values()),
        "tasks_per_worker_min": min(per_worker.values()),
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "overhead": overhead,
    "throughput": throughput,
    "burst": burst,
    "faults": faults_run,
    "soak": soak,
}


def save(result: dict[str, Any], directory: Path = BENCH_DIR) -> Path:
    """Write one benchmark's figures, with the machine and the time, as JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = f"-{result['workers']}w" if "workers" in result else ""
    path = directory / f"{result['name']}{suffix}.json"
    record = {**result, "machine": machine(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def register(commands: Any) -> None:
    """Add the `bench` subcommand to the `lab` parser's subcommands."""
    import argparse

    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="measure the system (overhead, throughput, burst); figures go to data/bench/",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--workers", type=int, default=4, help="workers (throughput, burst)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (throughput)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration (throughput, soak)")
    parser.add_argument("--questions", type=int, default=None, help="questions (overhead: 300, burst: 40)")
    parser.add_argument("--work-seconds", type=float, default=1.0, help="simulated work per task (burst)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object, last")
    parser.set_defaults(run=_run)


def _run(args: Any) -> int:
    if args.name == "overhead":
        result = overhead(questions=args.questions or 300)
    elif args.name == "soak":
        result = soak(workers=args.workers, work_seconds=args.work_seconds, seconds=args.seconds)
    elif args.name == "faults":
        result = faults_run(workers=args.workers, questions=args.questions or 500, work_seconds=args.work_seconds)
    elif args.name == "burst":
        result = burst(workers=args.workers, questions=args.questions or 40, work_seconds=args.work_seconds)
    else:
        result = throughput(workers=args.workers, clients=args.clients, seconds=args.seconds)
    path = save(result)
    print(", ".join(f"{k}={v}" for k, v in result.items() if k != "name") + f"  ({args.name}; saved to {path})")
    if args.json:
        print(json.dumps(result))
    return 0
