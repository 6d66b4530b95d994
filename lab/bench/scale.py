"""`lab bench scale`: one master, hundreds of simulated workers (lab.bench.sim_workers) and a deep queue.

Protocol: a local system with no real worker and the per-session limits lifted; `--tasks` questions are
queued first through `--clients` Socket.IO sessions, as fast as the master accepts them; then
`--processes` processes start `--workers` simulated workers (zero work, zero model latency by default),
which drain the queue. With zero work the drain measures the master's dispatch rate.

Figures (times are wall clock on this one machine, so the master's, the workers' and the clients'
stamps compare):
- ``drain_s``: from the first task message a simulated worker received to the last answer a client
  received. It includes the workers' ramp-up: ``workers_ready_s`` after their processes started, every
  simulated worker had its first task.
- ``dispatch_rate_per_s``: answered / drain_s; ``steady_rate_per_s``: the same between the 10th and the
  90th percentile of answers, without ramp-up and tail.
- ``dispatch_p50_ms``/``dispatch_p99_ms`` (a handover): on one worker, from the moment it sends
  the result of a task to the moment it starts on its next task (the task message has just arrived).
  All tasks are queued before any worker exists, so a worker never waits for work: the whole handover
  is the master taking the result, choosing the next task and publishing it, and the broker delivering
  it. Each worker's first task is not a handover. With ``--watch`` the master's Watch events
  split it into ``result_to_accept`` (result sent -> task.answered), ``accept_to_assign``
  (task.answered -> task.assigned of the next task) and ``assign_to_receive`` (-> the worker has it);
  ``result_to_assign`` is the master's own share (result sent -> next task.assigned). Master
  stamps are whole milliseconds.
- ``little_cycle_ms``: workers / steady_rate_per_s (Little's law). With the queue never empty, a worker's cycle
  is one task and one handover, and all of them share the master's rate: with zero work the handover is
  about this long whatever the master does per message. A handover p99 under 100 ms for 1,000 zero-work
  workers needs 10,000 tasks/s; below the master's rate (enough --work-seconds) it measures the master's
  latency instead of its throughput.
- ``submit_s``/``submit_rate_per_s``: queueing every question, no worker online (the master's accept rate
  with a growing queue: journal insert, ack and task-queued per question).
- ``master_rss_mb``: the master's peak resident memory (VmHWM of /proc/<pid>/status, sampled every
  0.5 s with VmRSS and the queue length from /api/status): ``master_rss_idle_mb`` before the first
  question, ``master_rss_queued_mb`` with the whole queue waiting, ``master_rss_end_mb`` after the drain.
- ``master_cpu_s``: the master's user + system CPU time during the drain (from /proc/<pid>/stat at the
  samples around it); ``master_cpu_share`` = master_cpu_s / drain_s (near 1: one core saturated, the
  master is the limit); ``master_cpu_ms_per_task`` and ``sim_cpu_ms_per_task`` (the simulated workers'
  processes, whole life) are the CPU cost of one task on each side, which contention does not inflate.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.analysis.stats import percentile
from lab.bench.procfs import group_pids
from lab.loadgen.client import ChatClient
from lab.loadgen.users import close_users, connect_users, load_corpus
from lab.system.presets import measurement_cluster, sessions_unlimited
from lab.system.procs import cpu_seconds
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lab.bench.sim_workers import SimFleet, TaskRecord
    from lab.observe.master_probe import Sample, Sampler, WatchLog

NAME = "scale"
HELP = "one master, many simulated workers, a deep queue: master RSS, dispatch latency, drain time"

ASK_TIMEOUT_S = 120.0
SENDERS_PER_CLIENT = 4  # questions each session keeps in flight while queueing


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of `lab bench scale`."""
    parser.add_argument("--workers", type=int, default=200, help="simulated workers")
    parser.add_argument("--tasks", type=int, default=20_000, help="questions queued before the workers start")
    parser.add_argument("--processes", type=int, default=2, help="processes the simulated workers share")
    parser.add_argument("--clients", type=int, default=50, help="Socket.IO sessions that queue the questions")
    parser.add_argument("--work-seconds", type=float, default=0.0, help="simulated work per task")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up the drain after this many seconds")
    parser.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="follow the master's Watch stream to split the handover in parts; it costs the master CPU and "
        "memory (at 200 workers about 40%% more CPU per task), so the headline figures are measured without",
    )


# -- the run ---------------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """What the clients saw, in wall-clock seconds."""

    submit_started: float = 0.0
    submit_ended: float = 0.0
    workers_started: float = 0.0
    accepted: int = 0
    refused: int = 0
    answer_times: list[float] = field(default_factory=list)  # first answer of each task
    answers: int = 0  # every ai-response, duplicates included
    sim_cpu_s: float = 0.0  # CPU time of the simulated workers' processes, once drained


def _wall(monotonic: float) -> float:
    return monotonic + (time.time() - time.monotonic())


async def _queue_all(clients: list[ChatClient], tasks: int, corpus: list[str], timeline: Timeline) -> None:
    """Send `tasks` questions round-robin over the sessions, a few in flight per session."""
    questions = iter(range(tasks))
    lock = asyncio.Lock()  # the iterator is shared by the senders

    async def sender(client: ChatClient) -> None:
        while True:
            async with lock:
                i = next(questions, None)
            if i is None:
                return
            exchange = await client.ask(f"{corpus[i % len(corpus)]} (#{i})", timeout=ASK_TIMEOUT_S)
            if exchange.task_id:
                timeline.accepted += 1
            else:
                timeline.refused += 1

    senders = [sender(c) for c in clients for _ in range(SENDERS_PER_CLIENT)]
    await asyncio.gather(*senders)


async def _run(
    url: str, fleet: SimFleet, sampler: Sampler, args: argparse.Namespace, timeline: Timeline
) -> list[ChatClient]:
    """Queue everything, start the workers, wait until every accepted question is answered."""
    clients = await connect_users(url, args.clients)
    try:
        timeline.submit_started = time.time()
        await _queue_all(clients, args.tasks, load_corpus(), timeline)
        timeline.submit_ended = time.time()
        sampler.sample()  # the whole queue waiting
        timeline.workers_started = time.time()
        fleet.start()
        deadline = time.monotonic() + args.timeout
        while True:
            answered = sum(len(c.answered()) for c in clients)
            if answered >= timeline.accepted:
                break
            fleet.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{answered} of {timeline.accepted} answered after {args.timeout} s")
            await asyncio.sleep(0.2)
        timeline.sim_cpu_s = sum(cpu_seconds(p.pid) for p in fleet.procs)
        await asyncio.sleep(0.5)  # a duplicate answer would come right after
        exchanges = [e for c in clients for e in c.exchanges.values()]
        timeline.answer_times = sorted(_wall(e.answered_at) for e in exchanges if e.answered_at is not None)
        timeline.answers = sum(len(e.answers) for e in exchanges)
    finally:
        await close_users(clients)
    return clients


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module's docstring)."""
    # Here, not at the top: the simulated workers bring the worker's model layer (google-genai), which
    # every `lab` command would otherwise load at start.
    from lab.bench.sim_workers import SimFleet
    from lab.observe.master_probe import Sampler, WatchLog

    # The sessions share every task of the run: lift the per-session limits above all of them.
    extra = sessions_unlimited(args.tasks * 2)
    records_dir = Path(tempfile.mkdtemp(prefix="lab-scale-"))
    timeline = Timeline()
    try:
        with measurement_cluster(0, work_seconds=args.work_seconds, extra_env=extra, restart=False) as cluster:
            master = cluster.processes["master"]

            def members() -> list[int]:  # the core and its web front (WEB_PROCESS): its process group
                return [int(pid) for pid in group_pids(master.pid)]

            fleet = SimFleet(cluster, args.workers, args.processes, records_dir)
            with (
                Sampler(master.pid, cluster.web_url, cluster.operator_token, members) as sampler,
                WatchLog(cluster.grpc_endpoint, args.watch) as watch,
            ):
                try:
                    run_loop(_run(cluster.web_url, fleet, sampler, args, timeline))
                finally:
                    records = fleet.stop()
                sampler.sample()
            if master.returncode is not None:
                raise RuntimeError(f"the master exited with code {master.returncode} during the run")
    finally:
        shutil.rmtree(records_dir, ignore_errors=True)
    return figures(args, timeline, records, sampler.samples, watch)


# -- figures ---------------------------------------------------------------------------------------------


def _ms_stats(prefix: str, values: list[float]) -> dict[str, float]:
    return {f"{prefix}_p50_ms": round(percentile(values, 50), 2), f"{prefix}_p99_ms": round(percentile(values, 99), 2)}


def handovers(records: list[TaskRecord]) -> list[tuple[TaskRecord, TaskRecord]]:
    """(a task, the next task on the same worker) for every worker, in the order the worker took them."""
    by_worker: dict[str, list[TaskRecord]] = defaultdict(list)
    for r in records:
        by_worker[r.worker_id].append(r)
    pairs: list[tuple[TaskRecord, TaskRecord]] = []
    for taken in by_worker.values():
        taken.sort(key=lambda r: r.received_ns)
        pairs.extend((a, b) for a, b in itertools.pairwise(taken) if a.sent_ns)
    return pairs


def _split(pairs: list[tuple[TaskRecord, TaskRecord]], watch: WatchLog) -> dict[str, float]:
    """The handover in three parts, from the master's Watch stamps."""
    answered: dict[str, int] = {}
    assigned: dict[tuple[str, int], int] = {}
    for kind, stamp, task_id, _, attempt, _ in watch.events:
        if kind == "task.answered":
            answered[task_id] = stamp
        elif kind == "task.assigned":
            assigned[(task_id, attempt)] = stamp
    parts: dict[str, list[float]] = {
        "result_to_accept": [],
        "accept_to_assign": [],
        "assign_to_receive": [],
        "result_to_assign": [],
    }
    for a, b in pairs:
        done, given = answered.get(a.task_id), assigned.get((b.task_id, b.attempt))
        if done is None or given is None:
            continue
        parts["result_to_accept"].append(done - a.sent_ns / 1e6)
        parts["accept_to_assign"].append(given - done)
        parts["assign_to_receive"].append(b.received_ns / 1e6 - given)
        parts["result_to_assign"].append(given - a.sent_ns / 1e6)
    out: dict[str, float] = {}
    for name, values in parts.items():
        out.update(_ms_stats(name, values))
    return out


def figures(
    args: argparse.Namespace,
    timeline: Timeline,
    records: list[TaskRecord],
    samples: list[Sample],
    watch: WatchLog,
) -> dict[str, Any]:
    """The result dict of one run."""
    pairs = handovers(records)
    gaps = [(b.received_ns - a.sent_ns) / 1e6 for a, b in pairs]
    first_received = min((r.received_ns for r in records), default=0) / 1e9
    answered = len(timeline.answer_times)
    last_answer = timeline.answer_times[-1] if timeline.answer_times else first_received
    drain = max(last_answer - first_received, 1e-9)
    lo, hi = int(answered * 0.1), max(int(answered * 0.9) - 1, 0)
    steady_span = timeline.answer_times[hi] - timeline.answer_times[lo] if answered > 10 else 0.0
    per_worker: dict[str, int] = defaultdict(int)
    firsts: dict[str, int] = {}  # worker id -> when it started on its first task
    for r in records:
        per_worker[r.worker_id] += 1
        firsts[r.worker_id] = min(firsts.get(r.worker_id, r.received_ns), r.received_ns)
    before = [s for s in samples if s.at <= timeline.workers_started]
    after = [s for s in samples if s.at >= last_answer]
    # The master idles before the workers start and after the last answer: the difference is the drain's.
    master_cpu = after[0].cpu_s - before[-1].cpu_s if before and after else float("nan")
    steady_rate = (hi - lo) / steady_span if steady_span > 0 else None
    origin = timeline.submit_started
    submit_s = timeline.submit_ended - timeline.submit_started
    result: dict[str, Any] = {
        "name": NAME,
        "workers": args.workers,
        "tasks": args.tasks,
        "processes": args.processes,
        "clients": args.clients,
        "work_seconds": args.work_seconds,
        "watch": bool(args.watch),
        "answered": answered,
        "duplicates": timeline.answers - answered,
        "refused": timeline.refused,
        "results_refused": sum(not r.accepted for r in records),
        "retried": sum(r.attempt > 1 for r in records),
        "submit_s": round(submit_s, 2),
        "submit_rate_per_s": round(timeline.accepted / submit_s, 1) if submit_s > 0 else 0.0,
        "workers_ready_s": round(max(firsts.values(), default=0) / 1e9 - timeline.workers_started, 2),
        "drain_s": round(drain, 2),
        "dispatch_rate_per_s": round(answered / drain, 1),
        "steady_rate_per_s": round(steady_rate, 1) if steady_rate else None,
        "little_cycle_ms": round(1000 * args.workers / steady_rate, 1) if steady_rate else None,
        "handovers": len(gaps),
        **_ms_stats("dispatch", gaps),
        "dispatch_max_ms": round(max(gaps, default=float("nan")), 2),
        "workers_used": len(per_worker),
        "tasks_per_worker_min": min(per_worker.values(), default=0),
        "tasks_per_worker_max": max(per_worker.values(), default=0),
        "master_rss_mb": round(max((s.hwm_kb for s in samples), default=0) / 1024, 1),
        "master_rss_idle_mb": round(samples[0].rss_kb / 1024, 1) if samples else None,
        "master_rss_queued_mb": round(before[-1].rss_kb / 1024, 1) if before else None,
        "master_rss_end_mb": round(samples[-1].rss_kb / 1024, 1) if samples else None,
        "master_cpu_s": round(master_cpu, 2),
        "master_cpu_share": round(master_cpu / drain, 2),
        "master_cpu_ms_per_task": round(1000 * master_cpu / answered, 3) if answered else None,
        "sim_cpu_ms_per_task": round(1000 * timeline.sim_cpu_s / answered, 3) if answered else None,
    }
    if args.watch:
        from lab.bench.sim_workers import ID_PREFIX

        online = {e[3] for e in watch.events if e[0] == "worker.online" and e[3].startswith(ID_PREFIX)}
        result["workers_registered"] = len(online)
        result.update(_split(pairs, watch))
        result["watch_error"] = watch.error
    result["series"] = {
        "t_s": [round(s.at - origin, 2) for s in samples],
        "queue": [s.queue for s in samples],
        "rss_mb": [round(s.rss_kb / 1024, 1) for s in samples],
        "workers_started_s": round(timeline.workers_started - origin, 2),
        "drained_s": round(last_answer - origin, 2),
    }
    return result


def summary(result: dict[str, Any]) -> str:
    """One paragraph of the main figures."""
    text = (
        f"{result['workers']} workers drained {result['answered']} of {result['tasks']} queued tasks in "
        f"{result['drain_s']} s ({result['dispatch_rate_per_s']} tasks/s, steady {result['steady_rate_per_s']}); "
        f"handover p50 {result['dispatch_p50_ms']} ms, p99 {result['dispatch_p99_ms']} ms "
        f"(workers/steady rate: {result.get('little_cycle_ms')} ms); "
        f"master peak RSS {result['master_rss_mb']} MB (idle {result['master_rss_idle_mb']}, "
        f"queued {result['master_rss_queued_mb']}); queued at {result['submit_rate_per_s']} tasks/s"
    )
    if result.get("watch"):
        text += (
            f"; handover split p50: result->accept {result['result_to_accept_p50_ms']} ms, "
            f"accept->assign {result['accept_to_assign_p50_ms']} ms, "
            f"assign->worker {result['assign_to_receive_p50_ms']} ms"
        )
    problems = {k: result[k] for k in ("duplicates", "refused", "results_refused", "retried") if result.get(k)}
    if problems:
        text += "; " + ", ".join(f"{k} {v}" for k, v in problems.items())
    return text


def chart(result: dict[str, Any]) -> Figure:
    """Queue depth and the master's resident memory over time, with the workers' start and the drain's end."""
    from matplotlib.figure import Figure  # here, not at the top: `lab` imports every benchmark to build its parser

    series = result["series"]
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    queue_ax, rss_ax = figure.subplots(2, 1, sharex=True)
    points = [(t, q) for t, q in zip(series["t_s"], series["queue"], strict=True) if q is not None]
    if points:
        queue_ax.step([p[0] for p in points], [p[1] for p in points], where="post", color="tab:blue")
    queue_ax.set_ylabel("queued tasks")
    queue_ax.set_title(
        f"{result['workers']} simulated workers, {result['tasks']} queued tasks: drained in {result['drain_s']} s"
    )
    rss_ax.plot(series["t_s"], series["rss_mb"], color="tab:orange")
    rss_ax.set_ylabel("master RSS (MB)")
    rss_ax.set_xlabel("seconds since the first question was sent")
    for ax in (queue_ax, rss_ax):
        ax.axvline(series["workers_started_s"], color="grey", linestyle="--", linewidth=1)
        ax.axvline(series["drained_s"], color="tab:green", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    queue_ax.text(series["workers_started_s"], 0, " workers start", color="grey", fontsize="small", va="bottom")
    queue_ax.text(series["drained_s"], 0, " drained", color="tab:green", fontsize="small", va="bottom")
    return figure
