"""Benchmark `saturation`: offer twice what the workers can do, then let the queue drain; how close the
system comes to its capacity (workers / work time) and how evenly it spreads the tasks.

Achieved throughput is taken over the busy window: from the first assignment to the last answer (the
worker's completion time). The open-loop load is above capacity, so the queue holds tasks through all of it
but the last round (every worker's final task, when nothing is left to give it): answered tasks over that
window is what the system did while it had work to do, and a system that never lets a worker wait for a
task scores 1.0. Each worker's idle end after the last round (at most one work time) costs it a little.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.bench.common import figure, per_second, tasks_per_worker_bars
from lab.loadgen import arrivals
from lab.system.presets import measurement_cluster

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


NAME = "saturation"
HELP = "twice the capacity offered, then the queue drained: efficiency against workers / work time, spread"


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --work-seconds, --load, --seconds, --arrival, --users, --seed."""
    parser.add_argument("--workers", type=int, default=4, help="workers")
    parser.add_argument("--work-seconds", type=float, default=0.5, help="simulated work per task")
    parser.add_argument("--load", type=float, default=2.0, help="offered rate as a multiple of capacity")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long questions are sent")
    parser.add_argument("--arrival", choices=["constant", "poisson"], default="constant", help="arrival process")
    parser.add_argument("--users", type=int, default=50, help="users the questions are spread over")
    parser.add_argument("--seed", type=int, default=7, help="seed of the Poisson arrivals")


def _ms(tasks: pd.DataFrame, column: str) -> pd.Series:
    import pandas as pd  # here, not at the top: `lab` imports every benchmark to build its parser

    return pd.to_numeric(tasks[column], errors="coerce").astype("float64")


def saturation_figures(
    tasks: pd.DataFrame, workers: int, work_seconds: float, worker_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """Efficiency and spread from a task frame (lab.runs.TASK_COLUMNS, times in ms).

    busy window = last `finished` minus first `assigned`; achieved = answered tasks / busy window;
    efficiency = achieved / (workers / work_seconds). Tasks per worker count answered tasks by the worker
    that answered; `worker_ids` adds workers that answered none (then max_min_ratio is None).
    """
    answered = tasks[tasks["outcome"] == "answered"]
    first_assigned = _ms(tasks, "assigned").min()
    last_finished = _ms(answered, "finished").max()
    window_s = (last_finished - first_assigned) / 1000 if len(answered) else math.nan
    capacity = workers / work_seconds
    achieved = len(answered) / window_s if window_s > 0 else math.nan
    counts = {w: 0 for w in worker_ids}
    for worker in answered["worker_id"]:
        counts[str(worker)] = counts.get(str(worker), 0) + 1
    low, high = min(counts.values(), default=0), max(counts.values(), default=0)
    finished_s = ((_ms(answered, "finished") - first_assigned) / 1000).dropna().tolist()
    return {
        "answered": len(answered),
        "capacity_per_s": round(capacity, 3),
        "window_s": round(window_s, 3),
        "achieved_per_s": round(achieved, 3),
        "efficiency": round(achieved / capacity, 4),
        # What each task cost a worker beyond the work itself, on average: the time lost between tasks.
        "overhead_per_task_ms": round((workers * window_s / len(answered) - work_seconds) * 1000, 2)
        if len(answered)
        else math.nan,
        "tasks_per_worker": dict(sorted(counts.items())),
        "tasks_per_worker_max": high,
        "tasks_per_worker_min": low,
        "max_min_ratio": round(high / low, 3) if low else None,
        "answers_per_second": per_second(finished_s),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Open-loop questions at `load` x capacity for `seconds`, then wait until every one is answered."""
    from lab.experiment import run_open  # here, not at the top: `lab` imports every benchmark to build its parser

    capacity = args.workers / args.work_seconds
    rate = args.load * capacity
    if args.arrival == "poisson":
        schedule = arrivals.poisson(rate, args.seconds, seed=args.seed)
    else:
        schedule = arrivals.constant(rate, args.seconds)
    # Everything sent beyond capacity waits in the queue: (load - 1) x seconds to drain, and some margin.
    drain_s = max(args.load - 1, 0) * args.seconds
    with measurement_cluster(args.workers, args.work_seconds) as cluster:
        worker_ids = cluster.worker_ids
        run = run_open(
            cluster,
            schedule,
            label="bench-saturation",
            users=args.users,
            duration_s=args.seconds,
            arrival=args.arrival,
            answer_timeout_s=drain_s + 60,
        )
    load = run.params["load"]
    return {
        "name": NAME,
        "workers": args.workers,
        "work_seconds": args.work_seconds,
        "offered_per_s": round(len(schedule) / args.seconds, 3),
        "seconds": args.seconds,
        "arrival": args.arrival,
        "sent": int(load["sent"]),
        "unanswered": int(load["unanswered"]),
        "duplicates": int(load["duplicates"]),
        **saturation_figures(run.tasks, args.workers, args.work_seconds, worker_ids),
    }


def summary(result: dict[str, Any]) -> str:
    """Efficiency, how it is defined, and the spread."""
    return "\n".join(
        [
            f"saturation: {result['offered_per_s']:g} questions/s offered for {result['seconds']:g} s to "
            f"{result['workers']} workers of {result['work_seconds']:g} s each (capacity "
            f"{result['capacity_per_s']:g}/s); {result['answered']} of {result['sent']} answered, "
            f"{result['unanswered']} unanswered, {result['duplicates']} duplicates",
            f"efficiency {result['efficiency']:.3f}: {result['answered']} answers over the busy window of "
            f"{result['window_s']:g} s (first assignment to last answer, the queue never empty before the "
            f"last round) = {result['achieved_per_s']:g}/s against {result['capacity_per_s']:g}/s; "
            f"{result['overhead_per_task_ms']:g} ms lost per task beyond the work",
            f"tasks per worker {result['tasks_per_worker_min']} to {result['tasks_per_worker_max']} "
            f"(max/min {result['max_min_ratio']})",
        ]
    )


def chart(result: dict[str, Any]) -> Figure:
    """Answers per second over the busy window against capacity and the offered rate; tasks per worker."""
    fig, (ax, bars) = figure(1, 2)
    counts = result.get("answers_per_second", [])
    ax.bar(range(len(counts)), counts, width=0.9, align="edge", color="tab:blue", label="answers in the second")
    ax.axhline(result["capacity_per_s"], color="tab:red", linestyle="--", label="capacity")
    ax.axhline(result["offered_per_s"], color="tab:grey", linestyle=":", label="offered")
    ax.axvspan(0, result["seconds"], color="tab:orange", alpha=0.1, label="sending")
    ax.set_xlabel("seconds since the first assignment")
    ax.set_ylabel("answers per second")
    ax.set_title(f"Saturation: efficiency {result['efficiency']:.3f}")
    ax.legend(fontsize="small")
    tasks_per_worker_bars(bars, result.get("tasks_per_worker", {}))
    return fig
