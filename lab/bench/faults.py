"""Benchmark `faults`: load through the system while workers, the master and the broker are killed."""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from lab.analysis.stats import percentile
from lab.bench.common import figure
from lab.loadgen.client import ChatClient, Exchange
from lab.system.local import LocalCluster
from lab.system.presets import measurement_cluster
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NAME = "faults"
HELP = "questions answered while workers (SIGKILL, SIGSTOP), the master and Mosquitto are killed"


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --work-seconds, --questions, --clients, --every, --master-at, --broker-at, --stopped-for."""
    parser.add_argument("--workers", type=int, default=4, help="workers")
    parser.add_argument("--work-seconds", type=float, default=1.0, help="simulated work per task")
    parser.add_argument("--questions", type=int, default=500, help="questions in all")
    parser.add_argument("--clients", type=int, default=20, help="users, each with at most 2 questions open")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between faults")
    parser.add_argument("--master-at", type=float, default=20.0, help="SIGKILL the master this many seconds in")
    parser.add_argument("--broker-at", type=float, default=40.0, help="restart Mosquitto this many seconds in")
    parser.add_argument(
        "--stopped-for", type=float, default=12.0, help="a SIGSTOPped worker is SIGKILLed this much later"
    )


@dataclass(frozen=True)
class Fault:
    """One injected fault: when (time.monotonic()), what, and which worker (if any)."""

    at: float
    kind: str  # SIGKILL, SIGSTOP, master-SIGKILL, broker-restart
    worker_id: str = ""


def reassignment_delays(faults: list[Fault], exchanges: list[Exchange]) -> dict[str, list[float]]:
    """For each worker fault, the seconds until each task it held was given to another worker."""
    delays: dict[str, list[float]] = {}
    for fault in faults:
        if not fault.worker_id:
            continue
        for exchange in exchanges:
            before = [w for t, w in exchange.assignments if t <= fault.at]
            if not before or before[-1] != fault.worker_id:
                continue  # this task was not on the victim when it died
            if exchange.answered_at is not None and exchange.answered_at <= fault.at:
                continue
            after = [t for t, w in exchange.assignments if t > fault.at and w != fault.worker_id]
            if after:
                delays.setdefault(fault.kind, []).append(after[0] - fault.at)
    return delays


async def _users(
    url: str, clients: int, questions: int, in_flight: int, progress: Callable[[], None]
) -> list[ChatClient]:
    users = [ChatClient(url) for _ in range(clients)]
    await asyncio.gather(*(u.connect() for u in users))
    per_user = [questions // clients + (1 if i < questions % clients else 0) for i in range(clients)]

    async def run(user: ChatClient, count: int, index: int) -> None:
        sent = 0
        while sent < count:
            while sent - len(user.answered()) >= in_flight:
                await user.wait_answers(len(user.answered()) + 1, timeout=600)
                progress()
            exchange = await _ask_retrying(user, f"fault run question {index}-{sent}")
            if exchange.task_id:
                sent += 1
        while len(user.answered()) < count:
            await user.wait_answers(len(user.answered()) + 1, timeout=600)
            progress()

    await asyncio.gather(*(run(u, n, i) for i, (u, n) in enumerate(zip(users, per_user, strict=True))))
    return users


async def _ask_retrying(user: ChatClient, query: str) -> Exchange:
    """Ask once the master is reachable: while it restarts, a question cannot be sent (no ack)."""
    while True:
        try:
            exchange = await user.ask(query, timeout=5)
        except Exception:
            await asyncio.sleep(0.5)
            continue
        if exchange.task_id:
            return exchange
        await asyncio.sleep(0.5)  # refused (a limit): try again shortly


async def _chaos(
    cluster: LocalCluster,
    faults: list[Fault],
    every_s: float,
    master_at: float,
    broker_at: float,
    stopped_for: float,
    done: asyncio.Event,
) -> None:
    start = time.monotonic()
    rng = random.Random(7)
    master_done = broker_done = False
    kinds = [signal.SIGKILL, signal.SIGSTOP]
    n = 0
    pending_kills: list[asyncio.Task[None]] = []
    while not done.is_set():
        await asyncio.sleep(every_s)
        if done.is_set():
            break
        elapsed = time.monotonic() - start
        if not master_done and elapsed >= master_at:
            master_done = True
            faults.append(Fault(time.monotonic(), "master-SIGKILL"))
            await asyncio.to_thread(cluster.kill_master, signal.SIGKILL)  # the supervisor starts it again
            continue
        if not broker_done and elapsed >= broker_at:
            broker_done = True
            faults.append(Fault(time.monotonic(), "broker-restart"))
            await asyncio.to_thread(cluster.restart_broker)
            continue
        alive = [w for w in cluster.worker_ids if w not in {f.worker_id for f in faults}]
        if not alive:
            continue
        victim, sig = rng.choice(alive), kinds[n % 2]
        n += 1
        faults.append(Fault(time.monotonic(), sig.name, victim))
        if sig is signal.SIGSTOP:
            cluster.signal_worker(victim, signal.SIGSTOP)
            pending_kills.append(asyncio.create_task(_kill_later(cluster, victim, stopped_for)))
        else:
            await asyncio.to_thread(cluster.kill_worker, victim, signal.SIGKILL)
    await asyncio.gather(*pending_kills)


async def _kill_later(cluster: LocalCluster, worker_id: str, after_s: float) -> None:
    # Killed for good once its Last Will has fired, so its task was reassigned because it hung.
    await asyncio.sleep(after_s)
    await asyncio.to_thread(cluster.kill_worker, worker_id, signal.SIGKILL)


async def _run(cluster: LocalCluster, args: argparse.Namespace, in_flight: int = 2) -> dict[str, Any]:
    faults: list[Fault] = []
    done = asyncio.Event()
    bar = tqdm(total=args.questions, desc="fault run", unit="answer")

    def progress() -> None:
        bar.update(1)

    chaos = asyncio.create_task(
        _chaos(cluster, faults, args.every, args.master_at, args.broker_at, args.stopped_for, done)
    )
    start = time.monotonic()
    try:
        users = await _users(cluster.web_url, args.clients, args.questions, in_flight, progress)
    finally:
        done.set()
        await chaos
        bar.close()
    elapsed = time.monotonic() - start
    await asyncio.sleep(1.0)  # late duplicates would arrive now
    exchanges = [e for u in users for e in u.exchanges.values()]
    await asyncio.gather(*(u.close() for u in users))
    delays = reassignment_delays(faults, exchanges)
    answered = [e for e in exchanges if e.answers]
    result: dict[str, Any] = {
        "name": NAME,
        "questions": args.questions,
        "clients": args.clients,
        "elapsed_s": round(elapsed, 1),
        "answered": len(answered),
        "answered_once": sum(1 for e in answered if len(e.answers) == 1),
        "resent_after_reconnect": sum(len(e.answers) - 1 for e in answered),
        "distinct_answers_differ": sum(1 for e in answered if len({a.response for a in e.answers}) > 1),
        "errors": sum(1 for e in answered if e.answer and e.answer.failed),
        "faults": [f.kind for f in faults],
        "fault_at_s": [round(f.at - start, 2) for f in faults],
        "restarts": len(cluster.restarts),
        "answered_at_s": sorted(round(e.answered_at - start, 2) for e in answered if e.answered_at is not None),
    }
    for kind, values in sorted(delays.items()):
        key = kind.lower()
        result[f"reassign_{key}_n"] = len(values)
        result[f"reassign_{key}_p50_s"] = round(percentile(values, 50), 2)
        result[f"reassign_{key}_max_s"] = round(max(values), 2)
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`questions` questions from `clients` users (each with at most 2 open) while a worker is killed every
    `every` seconds (SIGKILL and SIGSTOP in turn), the master is killed once with SIGKILL and Mosquitto
    restarted once; the supervisor restarts what dies. Answers per question, and per kind of worker fault
    the seconds from the fault until each task the victim held was assigned to another worker."""
    with measurement_cluster(args.workers, args.work_seconds) as cluster:
        return run_loop(_run(cluster, args))


def summary(result: dict[str, Any]) -> str:
    """Answers, duplicates and reassignment times."""
    lines = [
        f"fault run: {result['answered']} of {result['questions']} questions answered in {result['elapsed_s']} s, "
        f"{result['answered_once']} exactly once, {result['resent_after_reconnect']} answers sent again after a "
        f"reconnect, {result['distinct_answers_differ']} with differing answers, {result['errors']} errors",
        f"faults: {', '.join(result['faults']) or 'none'}; {result['restarts']} restarts by the supervisor",
    ]
    for kind in sorted({k.split("_")[1] for k in result if k.startswith("reassign_")}):
        lines.append(
            f"reassigned after {kind.upper()}: {result[f'reassign_{kind}_n']} tasks, "
            f"p50 {result[f'reassign_{kind}_p50_s']} s, max {result[f'reassign_{kind}_max_s']} s"
        )
    return "\n".join(lines)


def chart(result: dict[str, Any]) -> Figure:
    """Questions answered over time with the faults marked, and the reassignment delays per fault kind."""
    fig, (ax, bars) = figure(1, 2)
    times = result.get("answered_at_s", [])
    ax.step([0.0, *times], range(len(times) + 1), where="post", label="answered")
    colours = {"SIGKILL": "tab:red", "SIGSTOP": "tab:purple", "master-SIGKILL": "black", "broker-restart": "tab:green"}
    for kind, at in zip(result.get("faults", []), result.get("fault_at_s", []), strict=False):
        ax.axvline(at, color=colours.get(kind, "grey"), linestyle=":", linewidth=1)
    for kind, colour in colours.items():
        if kind in result.get("faults", []):
            ax.plot([], [], color=colour, linestyle=":", label=kind)
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel("questions answered")
    ax.set_title("Answers through the faults")
    ax.legend(fontsize="small")
    kinds = sorted({k.split("_")[1] for k in result if k.startswith("reassign_")})
    x = range(len(kinds))
    bars.bar([i - 0.2 for i in x], [result[f"reassign_{k}_p50_s"] for k in kinds], width=0.4, label="p50")
    bars.bar([i + 0.2 for i in x], [result[f"reassign_{k}_max_s"] for k in kinds], width=0.4, label="max")
    bars.set_xticks(list(x), [k.upper() for k in kinds])
    bars.set_ylabel("seconds from the fault to reassignment")
    bars.set_title("Reassignment after a worker fault")
    if kinds:
        bars.legend(fontsize="small")
    return fig
