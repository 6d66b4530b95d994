"""The master over two processes (WEB_PROCESS=true): Socket.IO and HTTP in a web front, the decisions in the
core. The same behaviour from outside, exactly once, and a front or core that dies loses no question."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from services.master.settings import MasterSettings
from tests.conftest import ClusterFactory
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SPLIT = MasterSettings.env_of(web_process=True)


def children(pid: int) -> list[int]:
    """The pids of a process's children (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def front_pid(cluster: LocalCluster) -> int:
    (pid,) = [p for p in children(cluster.processes["master"].pid) if b"services.master.front" in cmdline(p)]
    return pid


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return b"services.master" in cmdline(pid)


async def test_questions_are_answered_exactly_once_through_the_web_front(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.1, extra_env=SPLIT)
    assert front_pid(cluster) != cluster.processes["master"].pid  # Socket.IO is served by the other process
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"split {i}") for i in range(8)]
        await user.wait_answers(8, timeout=20)
        await asyncio.sleep(0.5)  # room for a duplicate to arrive
    assert all(len(e.answers) == 1 for e in asked)
    assert {e.answers[0].taskId for e in asked} == {e.task_id for e in asked}
    # The operator views are the core's, behind the front.
    headers = {"Authorization": f"Bearer {cluster.operator_token}"}
    async with httpx.AsyncClient(base_url=cluster.web_url, timeout=5) as http:
        status = (await http.get("/api/status", headers=headers)).json()
        metrics = (await http.get("/metrics", headers=headers)).text
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/api/status")).status_code == 401  # the token still needed
    assert {w["worker_id"] for w in status["workers"]} == set(cluster.worker_ids)
    assert sum(w["tasks_done"] for w in status["workers"]) == 8
    assert 'swarm_tasks_total{outcome="answered"} 8.0' in metrics


async def test_a_killed_web_front_is_started_again_and_the_answer_waits_for_its_user(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=2.0, extra_env=SPLIT)
    first = front_pid(cluster)
    user = ChatClient(cluster.web_url)
    await user.connect()
    try:
        asked = await user.ask("answered while the front is down")
        os.kill(first, signal.SIGKILL)  # the user's connection goes with it; the question is the core's
        await eventually(lambda: not alive(first), "the killed front gone")
        await eventually(lambda: front_pid_or_none(cluster) not in (None, first), "a new web front", timeout=20)
        await eventually(lambda: user.sio.connected, "the client reconnected to the new front", timeout=30)
        await user.wait_answers(1, timeout=30)
        await asyncio.sleep(0.5)
    finally:
        await user.close()
    assert [a.taskId for a in asked.answers] == [asked.task_id]  # once, after the reconnect


def front_pid_or_none(cluster: LocalCluster) -> int | None:
    try:
        return front_pid(cluster)
    except ValueError:
        return None


async def test_when_the_core_is_killed_its_front_goes_too_and_the_restarted_master_answers(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=2.0, extra_env=SPLIT, restart=False)
    front = front_pid(cluster)
    user = ChatClient(cluster.web_url)
    await user.connect()
    try:
        asked = await user.ask("accepted before the core died")
        cluster.kill_master()
        # No orphan keeps the port (or the users' connections): the front sees the link close and exits.
        await eventually(lambda: not alive(front), "the front exits with its core", timeout=10)
        cluster.restart_master()
        await user.wait_answers(1, timeout=40)
        await asyncio.sleep(0.5)
    finally:
        await user.close()
    assert [a.taskId for a in asked.answers] == [asked.task_id]


async def test_a_master_restarted_at_once_after_its_core_died_gets_its_port_back(
    cluster_factory: ClusterFactory,
) -> None:
    """The old front, its core killed, must not hold the port while its users' long-polls end: it exits at once
    (a graceful shutdown waited for them, and the new front could not bind for 30 s)."""
    cluster = cluster_factory(workers=1, work_seconds=0.1, extra_env=SPLIT, restart=False)
    front = front_pid(cluster)
    async with httpx.AsyncClient(base_url=cluster.web_url, timeout=60) as http:
        opened = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        sid = opened.text[opened.text.index('"sid":"') + 7 :].split('"', 1)[0]
        # An Engine.IO long-poll: the front holds it open until it has something to send (up to a ping interval).
        poll = asyncio.create_task(http.get("/socket.io/", params={"EIO": "4", "transport": "polling", "sid": sid}))
        await asyncio.sleep(0.5)
        assert not poll.done(), "the long-poll is held open by the front"
        cluster.kill_master()
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(cluster.restart_master)
        took = asyncio.get_running_loop().time() - started
        poll.cancel()
    assert not alive(front)
    assert took < 15, f"the restarted master took {took:.1f} s to serve"
    user = ChatClient(cluster.web_url)
    await user.connect()
    try:
        asked = await user.ask("after the restart")
        await user.wait_answers(1, timeout=30)
    finally:
        await user.close()
    assert [a.taskId for a in asked.answers] == [asked.task_id]
