"""Benchmark `burst`: many users ask at the same moment; how long until all are answered, and by whom."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from lab.bench.common import figure, tasks_per_worker_bars
from lab.loadgen.client import ChatClient
from lab.system.presets import measurement_cluster
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NAME = "burst"
HELP = "many users ask at once: total time, answers per question, tasks per worker"


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --questions, --work-seconds."""
    parser.add_argument("--workers", type=int, default=4, help="workers")
    parser.add_argument("--questions", type=int, default=40, help="users, one question each")
    parser.add_argument("--work-seconds", type=float, default=1.0, help="simulated work per task")


async def _burst(url: str, questions: int) -> tuple[float, float, list[ChatClient]]:
    users = [ChatClient(url) for _ in range(questions)]
    await asyncio.gather(*(u.connect() for u in users))
    start = time.monotonic()
    await asyncio.gather(*(u.ask(f"burst question {i}") for i, u in enumerate(users)))
    await asyncio.gather(*(u.wait_answers(1, timeout=600) for u in users))
    elapsed = time.monotonic() - start
    await asyncio.sleep(0.5)  # a duplicate answer would arrive right after
    await asyncio.gather(*(u.close() for u in users))
    return start, elapsed, users


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`questions` connected users ask at once; the time until the last answer against the ideal
    ceil(questions / workers) x work time, duplicates, and how many tasks each worker did."""
    with measurement_cluster(workers=args.workers, work_seconds=args.work_seconds) as cluster:
        start, elapsed, users = run_loop(_burst(cluster.web_url, args.questions))
    answers = [a for u in users for e in u.exchanges.values() for a in e.answers]
    per_worker = Counter(a.workerId for a in answers)
    answered_at = sorted(e.answered_at - start for u in users for e in u.exchanges.values() if e.answered_at)
    tasks = {a.taskId for a in answers}
    return {
        "name": NAME,
        "workers": args.workers,
        "questions": args.questions,
        "work_seconds": args.work_seconds,
        "answered": len(tasks),
        "duplicates": len(answers) - len(tasks),
        "elapsed_s": round(elapsed, 2),
        "ideal_s": -(-args.questions // args.workers) * args.work_seconds,
        "tasks_per_worker_max": max(per_worker.values(), default=0),
        "tasks_per_worker_min": min(per_worker.values(), default=0),
        "tasks_per_worker": dict(sorted(per_worker.items())),
        "answered_at_s": [round(t, 3) for t in answered_at],
    }


def summary(result: dict[str, Any]) -> str:
    """Total time against the ideal, answers, spread over workers."""
    return (
        f"burst of {result['questions']} questions on {result['workers']} workers "
        f"({result['work_seconds']:g} s work): all answered in {result['elapsed_s']} s "
        f"(ideal {result['ideal_s']:g} s); {result['answered']} answered, {result['duplicates']} duplicates; "
        f"tasks per worker {result['tasks_per_worker_min']} to {result['tasks_per_worker_max']}"
    )


def chart(result: dict[str, Any]) -> Figure:
    """Questions answered over time against the ideal staircase, and tasks per worker."""
    fig, (ax, bars) = figure(1, 2)
    times = result.get("answered_at_s", [])
    ax.step([0.0, *times], range(len(times) + 1), where="post", label="answered")
    workers, work = result["workers"], result["work_seconds"]
    rounds = -(-result["questions"] // workers)
    ideal_t = [0.0] + [work * (r + 1) for r in range(rounds)]
    ideal_n = [0] + [min(workers * (r + 1), result["questions"]) for r in range(rounds)]
    ax.step(ideal_t, ideal_n, where="post", linestyle="--", color="tab:red", label="ideal")
    ax.set_xlabel("seconds since the burst")
    ax.set_ylabel("questions answered")
    ax.set_title("Burst")
    ax.legend(fontsize="small")
    tasks_per_worker_bars(bars, result.get("tasks_per_worker", {}))
    return fig
