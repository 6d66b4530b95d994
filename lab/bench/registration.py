"""Benchmark `registration`: how long a new worker process takes to do useful work.

A question waits in the queue of a system with no worker; one worker process (of `--language`: python, go or
java) is started, and its path to that first task is timed in stages, all on this machine's wall clock in ms:

- spawned: the lab starts the process (lab.procs.ManagedProcess.started_at);
- connected: the earlier of Mosquitto's `New client connected ... as <worker id>` (when the lab read the
  line: Mosquitto's own timestamps have whole seconds only, and the reading thread may be late) and the
  timestamp of the worker's registration message (it registers right after connecting and subscribing);
- assignable: the master's `worker.online` event (Watch): it has the registration, the worker may get tasks;
- first task: the worker starts the waiting task (`started_timestamp` of its answer).

The worker is then killed (SIGKILL: the broker sends its Last Will at once) and the next repeat starts a
new one once the master has seen it go offline. Not a clean stop: a worker stopped with SIGTERM right after
a task may publish its `idle` after its goodbye, and the master then holds it for idle until the lease of
the next task it gives it runs out.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lab.analysis.stats import percentile
from lab.bench.common import figure
from lab.bench.language_figures import unavailable
from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from lab.system.presets import measurement_cluster
from lab.system.workers import LANGUAGES, WorkerUnavailableError
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lab.observe.collect import Collector


NAME = "registration"
HELP = "from a worker process's start to its first task: MQTT connect, registration, assignment"
STAGES = ("spawned", "connected", "assignable", "first_task")
_CONNECTED = re.compile(r"New client connected from \S+ as (\S+) \(")


def add_options(parser: argparse.ArgumentParser) -> None:
    """--repeats, --language."""
    parser.add_argument("--repeats", type=int, default=10, help="workers started, one after the other")
    parser.add_argument("--language", choices=LANGUAGES, default="python", help="the workers' language")


class _ConnectLog:
    """A log sink that keeps when Mosquitto said each client connected (wall clock, ms)."""

    def __init__(self) -> None:
        self.connected: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        now = time.time_ns() // 1_000_000
        if name == "mosquitto" and (match := _CONNECTED.search(line)):
            with self._lock:
                self.connected.setdefault(match.group(1), now)


def stage_times(
    events: Sequence[Mapping[str, Any]],
    registrations: Sequence[Mapping[str, Any]],
    connected: Mapping[str, int],
    worker_id: str,
    task_id: str,
    spawned: int,
) -> dict[str, int]:
    """The stages (ms) of one worker's way to task `task_id`, from Watch `events`, the register messages
    seen on MQTT and Mosquitto's connect lines (client id -> ms)."""
    times = {"spawned": spawned}
    said = [int(m["timestamp"]) for m in registrations if m.get("worker_id") == worker_id and m.get("timestamp")]
    heard = [connected[worker_id]] if worker_id in connected else []
    if said or heard:
        times["connected"] = min(said + heard)
    for event in events:
        kind = event.get("kind")
        if kind == "worker.online" and event.get("worker_id") == worker_id:
            times.setdefault("assignable", int(event["timestamp"]))
        elif kind == "task.answered" and event.get("task_id") == task_id:
            times.setdefault("first_task", int(event.get("started_timestamp", 0)))
    missing = [s for s in STAGES if not times.get(s)]
    if missing:
        raise RuntimeError(f"worker {worker_id}: no {', '.join(missing)} seen")
    return times


def breakdown(repeats: Sequence[Mapping[str, int]]) -> dict[str, Any]:
    """The figures from each repeat's stage times: p50 and max of each step and of the whole."""

    def figures(key: str, values: list[float]) -> dict[str, float]:
        return {f"{key}_ms": round(percentile(values, 50), 1), f"{key}_max_ms": round(max(values), 1)}

    steps = [
        [
            float(r["connected"] - r["spawned"]),
            float(r["assignable"] - r["connected"]),
            float(r["first_task"] - r["assignable"]),
        ]
        for r in repeats
    ]
    return {
        **figures("start_to_first_task", [float(r["first_task"] - r["spawned"]) for r in repeats]),
        **figures("start_to_connect", [s[0] for s in steps]),
        **figures("connect_to_assignable", [s[1] for s in steps]),
        **figures("assignable_to_first_task", [s[2] for s in steps]),
        "steps_ms": [[round(v, 1) for v in s] for s in steps],
    }


async def _repeat(
    cluster: LocalCluster, collector: Collector, user: ChatClient, index: int, language: str
) -> tuple[str, str, int]:
    """Queue a question, start a worker, wait for the answer, kill the worker: (worker id, task id, spawned)."""
    exchange = await user.ask(f"registration probe {index}")
    before = set(cluster.processes)
    worker_id = await asyncio.to_thread(cluster.add_worker, False, None, language)
    (name,) = set(cluster.processes) - before
    # ManagedProcess times are monotonic: the wall clock of the spawn is now minus the time since.
    spawned = time.time_ns() // 1_000_000 - round((time.monotonic() - cluster.processes[name].started_at) * 1000)
    try:
        await user.wait_answers(index + 1, timeout=60)
    except TimeoutError as e:
        proc = cluster.processes[name]
        said = "\n".join(proc.tail(15))
        last = list(collector.watch.events)[-5:]
        raise TimeoutError(
            f"{e}; worker {worker_id} (exit code {proc.returncode}), task {exchange.task_id}; the last events: "
            f"{last}; its last output:\n{said}"
        ) from e
    await asyncio.to_thread(cluster.kill_worker, worker_id)
    # The next question must find no worker: wait until the master has seen this one leave.
    deadline = time.monotonic() + 30
    while not any(
        e.get("kind") == "worker.offline" and e.get("worker_id") == worker_id for e in collector.watch.events
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the master did not see {worker_id} go offline")
        await asyncio.sleep(0.05)
    return worker_id, exchange.task_id, spawned


async def _repeats(cluster: LocalCluster, collector: Collector, plan: Sequence[str]) -> list[tuple[str, str, int]]:
    async with ChatClient(cluster.web_url) as user:
        return [await _repeat(cluster, collector, user, i, language) for i, language in enumerate(plan)]


def timed_starts(plan: Sequence[str]) -> list[tuple[str, dict[str, int]]]:
    """One system with no worker; for each language of `plan` in turn, a question waits, a worker of that
    language starts and takes it, and is killed: (language, its stage times) each."""
    from lab.observe.collect import Collector  # here, not at the top: `lab` imports every benchmark to build its parser

    for language in sorted(set(plan)):  # not built: say so, and how to build it, before anything starts
        if (reason := unavailable(language)) is not None:
            raise WorkerUnavailableError(reason)
    log = _ConnectLog()
    with (
        measurement_cluster(workers=0, log_sink=log, restart=False) as cluster,
        Collector.for_cluster(cluster) as collector,
    ):
        done = run_loop(_repeats(cluster, collector, plan))
        events = list(collector.watch.events)
        tap = collector.tap
        registrations = [m for m in tap.messages if m["topic"] == tap.topics.register] if tap else []
    return [
        (language, stage_times(events, registrations, log.connected, w, t, s))
        for language, (w, t, s) in zip(plan, done, strict=True)
    ]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`repeats` times: a question waits with no worker, one worker process of `language` starts and takes it."""
    language = getattr(args, "language", "python")
    repeats = [times for _, times in timed_starts([language] * args.repeats)]
    return {"name": NAME, "language": language, "repeats": args.repeats, **breakdown(repeats)}


def summary(result: dict[str, Any]) -> str:
    """The whole and each step, p50 and max."""
    parts = [
        ("process start to first task", "start_to_first_task"),
        ("process start to MQTT connect", "start_to_connect"),
        ("MQTT connect to assignable (master's worker.online)", "connect_to_assignable"),
        ("assignable to first task started", "assignable_to_first_task"),
    ]
    language = result.get("language", "python")
    lines = [f"registration, {result['repeats']} {language} workers started one at a time with a question waiting:"]
    lines += [f"  {text}: p50 {result[f'{key}_ms']} ms, max {result[f'{key}_max_ms']} ms" for text, key in parts]
    return "\n".join(lines)


def chart(result: dict[str, Any]) -> Figure:
    """Stacked bars per repeat: process start to connect, connect to assignable, assignable to first task."""
    fig, (ax,) = figure()
    steps = result.get("steps_ms", [])
    x = range(1, len(steps) + 1)
    bottom = [0.0] * len(steps)
    labels = {
        "start_to_connect": "process start → MQTT connect",
        "connect_to_assignable": "MQTT connect → assignable",
        "assignable_to_first_task": "assignable → first task",
    }
    for i, (key, label) in enumerate(labels.items()):
        heights = [s[i] for s in steps]
        ax.bar(x, heights, bottom=bottom, label=f"{label} (p50 {result[f'{key}_ms']:g} ms)")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(list(x))
    ax.set_xlabel("repeat")
    ax.set_ylabel("ms since the process started")
    language = result.get("language", "python").capitalize()
    ax.set_title(f"{language} worker start to first task (p50 {result['start_to_first_task_ms']} ms)")
    ax.legend(fontsize="small")
    return fig
