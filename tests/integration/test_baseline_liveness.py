"""Baseline workers (no Last Will, never re-registering) fail fast and survive a master restart, on the real
Mosquitto, master and workers: a baseline worker is a process of its own (lab.bench.baseline_worker), killed
with kill -9 mid-task and while idle, stopped (hung), and the master is killed and restarted beside it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest

from lab.bench.baseline_worker import BaselineProcess
from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from tests.conftest import ClusterFactory
from tests.waiting import eventually

WORK = 2.0  # seconds of work per task, ours and the baseline's
LEASE = 60  # the master's lease setting: what a baseline worker's failure would cost without the broker's log


def _state(cluster: LocalCluster, worker_id: str) -> str | None:
    return next((w.state for w in cluster.status_report().workers if w.worker_id == worker_id), None)


@pytest.fixture
def baseline(cluster_factory: ClusterFactory) -> Iterator[tuple[LocalCluster, list[BaselineProcess]]]:
    """A baseline-mode system with no worker of ours yet, and a list to start baseline workers into."""
    cluster = cluster_factory(workers=0, work_seconds=WORK, baseline=True)
    started: list[BaselineProcess] = []
    yield cluster, started
    for proc in started:
        proc.stop()


async def start_baseline(cluster: LocalCluster, started: list[BaselineProcess], worker_id: str) -> BaselineProcess:
    proc = BaselineProcess(cluster.mqtt_port, worker_id, cluster.config.topic_prefix, work_seconds=WORK)
    started.append(proc)
    await eventually(lambda: _state(cluster, worker_id) == "idle", f"{worker_id} registered")
    return proc


async def test_a_baseline_worker_killed_mid_task_costs_no_lease(
    baseline: tuple[LocalCluster, list[BaselineProcess]],
) -> None:
    cluster, started = baseline
    victim = await start_baseline(cluster, started, "python-worker-b1")
    # Ours first (starting a worker may take longer than the work on a busy machine), idle for less time than
    # the victim: the question goes to the victim, ours is ready to take over.
    ours = await asyncio.to_thread(cluster.add_worker)
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("who answers after the kill?")
        await eventually(lambda: asked.worker_id == victim.worker_id, "the baseline worker has the question")
        await asyncio.sleep(WORK / 2)
        victim.kill()
        killed = time.monotonic()
        await user.wait_answers(1, timeout=WORK + 10)  # far less than the lease
    assert asked.answer is not None and asked.answer.workerId == ours
    assert asked.answered_at is not None and asked.answered_at - killed < LEASE / 2
    assert _state(cluster, victim.worker_id) == "offline"  # the broker said its connection closed


async def test_a_baseline_worker_killed_while_idle_is_given_nothing(
    baseline: tuple[LocalCluster, list[BaselineProcess]],
) -> None:
    cluster, started = baseline
    victim = await start_baseline(cluster, started, "python-worker-b2")
    ours = [await asyncio.to_thread(cluster.add_worker) for _ in range(2)]  # idle for less time than the victim
    victim.kill()
    await eventually(lambda: _state(cluster, victim.worker_id) == "offline", "the master saw it go", timeout=5)
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"idle kill {i}") for i in range(2)]
        await user.wait_answers(2, timeout=WORK + 10)
    assert {e.answer.workerId for e in asked if e.answer} == set(ours)
    assert all(w != victim.worker_id for e in asked for _, w in e.assignments)


async def test_a_hung_baseline_worker_loses_its_task_after_a_lease_sized_by_its_tasks(
    baseline: tuple[LocalCluster, list[BaselineProcess]],
) -> None:
    cluster, started = baseline
    hung = await start_baseline(cluster, started, "python-worker-b3")
    async with ChatClient(cluster.web_url) as user:
        first = await user.ask("a first task shows how long tasks take")
        await user.wait_answers(1, timeout=WORK + 10)
        assert first.answer is not None and first.answer.workerId == hung.worker_id
        ours = await asyncio.to_thread(cluster.add_worker)  # idle for less time than the baseline worker
        hung.kill(signal.SIGSTOP)  # alive and connected, silent: only a lease can notice
        try:
            second = await user.ask("the hung worker gets this one")
            await eventually(lambda: second.worker_id == hung.worker_id, "the hung worker has it")
            await user.wait_answers(2, timeout=3 * WORK + 10)  # the lease is ~1.5 tasks, not 60 s
        finally:
            hung.kill(signal.SIGCONT)
    assert second.answer is not None and second.answer.workerId == ours


async def test_baseline_workers_are_remembered_across_master_restarts(
    baseline: tuple[LocalCluster, list[BaselineProcess]],
) -> None:
    cluster, started = baseline
    worker = await start_baseline(cluster, started, "python-worker-b4")
    async with ChatClient(cluster.web_url) as user:
        # Killed and restarted while the baseline worker works: its result (or, if the master was away, its
        # idle) reaches the new master, and the question is answered once.
        running = await user.ask("answered across a master restart")
        await eventually(lambda: running.worker_id == worker.worker_id, "the baseline worker has it")
        cluster.kill_master(signal.SIGKILL)
        cluster.restart_master()
        await user.wait_answers(1, timeout=2 * WORK + 20)
        await eventually(lambda: _state(cluster, worker.worker_id) == "idle", "the baseline worker is idle again")
        # Restarted while it is idle: it will never register again, yet it is known and gets work.
    cluster.kill_master(signal.SIGKILL)
    cluster.restart_master()
    assert _state(cluster, worker.worker_id) == "idle"
    async with ChatClient(cluster.web_url) as newcomer:
        later = await newcomer.ask("answered by a worker that never registered with this master")
        await newcomer.wait_answers(1, timeout=WORK + 10)
    # Its client id is remembered too: a kill -9 is noticed at once.
    worker.kill()
    await eventually(lambda: _state(cluster, worker.worker_id) == "offline", "the master saw it go", timeout=5)
    assert running.answer is not None and len(running.answers) <= 2  # resent at most once after the reconnect
    assert {a.taskId for a in running.answers} == {running.task_id}
    assert later.answer is not None and later.answer.workerId == worker.worker_id
