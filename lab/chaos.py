"""The fault run: load through the system while workers, the master and the broker are killed."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from lab.client import ChatClient, Exchange
from lab.cluster import LocalCluster
from lab.measure import measurement_cluster
from lab.stats import percentile

# A stopped worker is killed for good this long after it was stopped (its Last Will has fired by then).
STOPPED_FOR_S = 12.0


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
            pending_kills.append(asyncio.create_task(_kill_later(cluster, victim)))
        else:
            await asyncio.to_thread(cluster.kill_worker, victim, signal.SIGKILL)
    await asyncio.gather(*pending_kills)


async def _kill_later(cluster: LocalCluster, worker_id: str) -> None:
    await asyncio.sleep(STOPPED_FOR_S)
    await asyncio.to_thread(cluster.kill_worker, worker_id, signal.SIGKILL)


async def _run(
    cluster: LocalCluster,
    questions: int,
    clients: int,
    in_flight: int,
    every_s: float,
    master_at: float,
    broker_at: float,
) -> dict[str, Any]:
    faults: list[Fault] = []
    done = asyncio.Event()
    bar = tqdm(total=questions, desc="fault run", unit="answer")

    def progress() -> None:
        bar.update(1)

    chaos = asyncio.create_task(_chaos(cluster, faults, every_s, master_at, broker_at, done))
    start = time.monotonic()
    try:
        users = await _users(cluster.web_url, clients, questions, in_flight, progress)
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
        "name": "faults",
        "questions": questions,
        "clients": clients,
        "elapsed_s": round(elapsed, 1),
        "answered": len(answered),
        "answered_once": sum(1 for e in answered if len(e.answers) == 1),
        "resent_after_reconnect": sum(len(e.answers) - 1 for e in answered),
        "distinct_answers_differ": sum(1 for e in answered if len({a["response"] for a in e.answers}) > 1),
        "errors": sum(1 for e in answered if e.answer and e.answer["error"]),
        "faults": [f.kind for f in faults],
        "restarts": len(cluster.restarts),
    }
    for kind, values in sorted(delays.items()):
        key = kind.lower()
        result[f"reassign_{key}_n"] = len(values)
        result[f"reassign_{key}_p50_s"] = round(percentile(values, 50), 2)
        result[f"reassign_{key}_max_s"] = round(max(values), 2)
    return result


def faults_run(
    workers: int = 4,
    work_seconds: float = 1.0,
    questions: int = 500,
    clients: int = 20,
    in_flight: int = 2,
    every_s: float = 5.0,
    master_at: float = 20.0,
    broker_at: float = 40.0,
) -> dict[str, Any]:
    """500 questions from 20 users while a worker is killed (SIGKILL or SIGSTOP) every 5 s, the master is
    killed once with SIGKILL and Mosquitto restarted once; the supervisor restarts what dies."""
    with measurement_cluster(workers, work_seconds) as cluster:
        return asyncio.run(_run(cluster, questions, clients, in_flight, every_s, master_at, broker_at))
