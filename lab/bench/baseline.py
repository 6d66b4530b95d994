"""Benchmark `baseline`: what a failed baseline worker (the original system's: no Last Will) costs its user.

A baseline-mode system with the offline model and `--work-seconds` of work; each case starts a baseline
worker of its own (`lab.bench.baseline_worker`, a process) and one of ours to take over, then:

- `killed mid-task`: the baseline worker has the question; `--fault-after` s in, kill -9. The broker sees
  the connection close and says so in its log; the master requeues at once. Timed: fault to the task's
  reassignment, and fault to the user's answer (the target: under 15 s with 10 s of work).
- `killed idle`: kill -9 of the idle baseline worker (idle for longest: it would get the next question),
  then at once a question. Timed: the question's extra wait (latency minus the work it took).
- `hung mid-task`: SIGSTOP instead (connected and silent: only a lease notices) after the baseline worker
  has answered one task; the lease is sized by that task (1.5x), not the `--lease-seconds` setting.
- `hung, first task` (the reference, `--reference` times, first): the same before any baseline worker has
  answered a task, so no lease is sized yet: whichever comes first of `--lease-seconds` and the broker's
  keepalive timeout (1.5 times the worker's keepalive: 30 s here, so 45 s). Before this master read the
  broker's log, every fault above cost that lease.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.analysis.stats import percentile
from lab.bench.common import figure
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lab.loadgen.client import ChatClient, Exchange
    from lab.system.local import LocalCluster


NAME = "baseline"
HELP = "a baseline worker (no Last Will) killed or hung mid-task or idle: seconds until its user has the answer"
CASES = ("killed mid-task", "killed idle", "hung mid-task", "hung, first task")


def add_options(parser: argparse.ArgumentParser) -> None:
    """--repeats, --reference, --work-seconds, --fault-after, --lease-seconds."""
    parser.add_argument("--repeats", type=int, default=3, help="faults of each kind")
    parser.add_argument("--reference", type=int, default=1, help="faults with the full lease (0: none)")
    parser.add_argument("--work-seconds", type=float, default=10.0, help="simulated work per task")
    parser.add_argument("--fault-after", type=float, default=3.0, help="seconds into the task of the fault")
    parser.add_argument("--lease-seconds", type=float, default=60.0, help="the master's LEASE_SECONDS")


class _Run:
    """One system and the steps every case shares."""

    def __init__(self, cluster: LocalCluster, user: ChatClient, args: argparse.Namespace) -> None:
        self.cluster, self.user, self.args = cluster, user, args
        self.count = 0

    def _state(self, worker_id: str) -> str | None:
        return next((w.state for w in self.cluster.status_report().workers if w.worker_id == worker_id), None)

    async def until(self, condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:g} s")
            await asyncio.sleep(0.02)

    async def baseline_worker(self) -> Any:
        from lab.bench.baseline_worker import BaselineProcess

        self.count += 1
        worker_id = f"python-worker-bl{self.count:04d}"
        proc = await asyncio.to_thread(
            BaselineProcess, self.cluster.mqtt_port, worker_id, self.cluster.config.topic_prefix, self.args.work_seconds
        )
        await self.until(lambda: self._state(worker_id) == "idle", f"{worker_id} registered")
        return proc

    async def ask(self, text: str) -> Exchange:
        exchange = await self.user.ask(f"{text} {self.count}")
        return exchange

    async def answered(self, exchange: Exchange) -> None:
        budget = self.args.lease_seconds + 3 * self.args.work_seconds + 30
        await self.until(lambda: exchange.answers, f"the answer to {exchange.query!r}", budget)

    async def case(self, kind: str) -> dict[str, float]:
        """One fault of `kind`; its timings in seconds."""
        proc = await self.baseline_worker()
        try:
            if kind.startswith("hung mid-task"):
                await self.answered(await self.ask("a first task sizes the lease"))
            ours = await asyncio.to_thread(self.cluster.add_worker)  # idle for less time than the baseline
            try:
                return await self._fault(kind, proc)
            finally:
                await asyncio.to_thread(self.cluster.stop_worker, ours)
        finally:
            await asyncio.to_thread(proc.stop)

    async def _fault(self, kind: str, proc: Any) -> dict[str, float]:
        if kind == "killed idle":
            proc.kill()
            at = time.monotonic()
            exchange = await self.ask("asked right after an idle worker died")
            await self.answered(exchange)
            assert exchange.answer is not None and exchange.answered_at is not None
            latency = exchange.answered_at - at
            to_victim = any(w == proc.worker_id for _, w in exchange.assignments)
            return {
                "latency_s": latency,
                "extra_s": latency - exchange.answer.processingTime / 1000,
                "given": float(to_victim),
            }
        exchange = await self.ask("the baseline worker has this one")
        await self.until(lambda: exchange.worker_id == proc.worker_id, "the baseline worker took it")
        await asyncio.sleep(self.args.fault_after)
        proc.kill(signal.SIGKILL if kind.startswith("killed") else signal.SIGSTOP)
        at = time.monotonic()
        await self.answered(exchange)
        assert exchange.answered_at is not None
        moved = [t for t, w in exchange.assignments if t > at and w != proc.worker_id]
        return {"to_answer_s": exchange.answered_at - at, "to_reassigned_s": moved[0] - at if moved else float("nan")}


async def _measure(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    from tqdm import tqdm

    from lab.loadgen.client import ChatClient

    # The reference first: once a baseline worker has answered a task, every lease is sized by it.
    plan = [CASES[3]] * args.reference + [kind for kind in CASES[:3] for _ in range(args.repeats)]
    found: dict[str, list[dict[str, float]]] = {kind: [] for kind in CASES}
    async with ChatClient(cluster.web_url) as user:
        run = _Run(cluster, user, args)
        for kind in tqdm(plan, desc="baseline faults", unit="fault"):
            found[kind].append(await run.case(kind))
    return found


def _figures(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "max": round(max(values), 2)} if values else {}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Each case `repeats` times (the reference `reference` times) in one baseline-mode system."""
    from lab.system.presets import measurement_cluster
    from services.master.settings import MasterSettings

    env = MasterSettings.env_of(lease_seconds=args.lease_seconds)
    with measurement_cluster(0, args.work_seconds, baseline=True, extra_env=env, restart=False) as cluster:
        found = run_loop(_measure(cluster, args))
    figures: dict[str, Any] = {
        "name": NAME,
        "work_seconds": args.work_seconds,
        "fault_after_seconds": args.fault_after,
        "lease_seconds": args.lease_seconds,
        "raw": found,
    }
    for kind, runs in found.items():
        key = kind.replace(" ", "_").replace(",", "")
        if kind == "killed idle":
            figures[key] = {
                "extra_wait_s": _figures([r["extra_s"] for r in runs]),
                "latency_s": _figures([r["latency_s"] for r in runs]),
                "given_to_the_dead_worker": sum(bool(r["given"]) for r in runs),
            }
        elif runs:
            figures[key] = {
                "fault_to_answer_s": _figures([r["to_answer_s"] for r in runs]),
                "fault_to_reassigned_s": _figures([r["to_reassigned_s"] for r in runs]),
            }
    return figures


def summary(result: dict[str, Any]) -> str:
    """One line per case."""
    work, after = result["work_seconds"], result["fault_after_seconds"]
    lines = [f"baseline worker faults, {work:g} s of work, faults {after:g} s into the task:"]
    for kind in CASES:
        key = kind.replace(" ", "_").replace(",", "")
        if key not in result:
            continue
        case = result[key]
        if kind == "killed idle":
            extra = case["extra_wait_s"]
            lines.append(
                f"  {kind}: extra wait p50 {extra['p50']:g} s, max {extra['max']:g} s; "
                f"given to the dead worker {case['given_to_the_dead_worker']} times"
            )
        else:
            answer, moved = case["fault_to_answer_s"], case["fault_to_reassigned_s"]
            lines.append(
                f"  {kind}: reassigned after p50 {moved['p50']:g} s, answered p50 {answer['p50']:g} s "
                f"(max {answer['max']:g} s) after the fault"
            )
    return "\n".join(lines)


def chart(result: dict[str, Any]) -> Figure:
    """Seconds from each fault to its user's answer, per case, against the work time and the 15 s target."""
    fig, (ax,) = figure()
    raw = result["raw"]
    kinds = [k for k in CASES if raw.get(k)]
    for i, kind in enumerate(kinds):
        values = [r["latency_s"] if kind == "killed idle" else r["to_answer_s"] for r in raw[kind]]
        ax.bar(i, percentile(values, 50), color="tab:blue", alpha=0.6)
        ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
    ax.axhline(
        result["work_seconds"], color="tab:green", linestyle=":", label=f"the work: {result['work_seconds']:g} s"
    )
    ax.axhline(15, color="tab:red", linestyle="--", label="target: 15 s")
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel("seconds from the fault to the answer")
    ax.set_title(f"Baseline worker faults, {result['work_seconds']:g} s of work (bar: p50, dots: each fault)")
    ax.legend(fontsize="small")
    return fig
