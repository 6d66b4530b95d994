"""Supervision with real processes: what dies is restarted (a worker as a new worker), what the lab stops is not."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from lab.system.supervision import RestartPolicy
from services.protocol.topics import Topics
from tests import waiting
from tests.conftest import ClusterFactory
from tests.integration.test_broker_auth import Peer
from tests.integration.test_lab_up import READY_TIMEOUT_S, STOP_TIMEOUT_S, LabUp, describe_pids, marked_pids, wait_gone

pytestmark = pytest.mark.integration


def wait_until(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` seconds (processes start slowly here)."""
    waiting.wait_until(condition, what, timeout)


def states(url: str, token: str) -> dict[str, str]:
    """Worker id -> state, as the master's /api/status says (empty while it does not answer); `token`: the
    operator token it needs."""
    try:
        headers = {"Authorization": f"Bearer {token}"}
        workers = httpx.get(f"{url}/api/status", timeout=2, headers=headers).json()["workers"]
    except (httpx.HTTPError, ValueError):
        return {}
    return {w["worker_id"]: w["state"] for w in workers}


def healthy(url: str) -> bool:
    """Whether the master at `url` says 200 on /healthz."""
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def environ(pid: int) -> dict[str, str]:
    """The environment a process was started with."""
    items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in items if b"=" in item)


# -- LocalCluster ---------------------------------------------------------------------------------------------


def test_killed_worker_is_replaced_by_a_new_worker(cluster_factory: ClusterFactory) -> None:
    events: list[str] = []
    cluster = cluster_factory(workers=2, on_event=events.append)
    victim, survivor = cluster.worker_ids
    cluster.kill_worker(victim, signal.SIGKILL)
    wait_until(lambda: len(cluster.worker_ids) == 2, "a replacement worker was started")
    newcomer = cluster.worker_ids[1]
    assert cluster.worker_ids == [survivor, newcomer] and newcomer != victim
    [restart] = cluster.restarts
    assert (restart.name, restart.returncode, restart.replacement) == ("worker-1", -signal.SIGKILL, "worker-3")
    assert events == [f"restarted worker-1 (killed by SIGKILL) as worker-3 ({newcomer})"]
    expected = {victim: "offline", survivor: "idle", newcomer: "idle"}
    wait_until(lambda: states(cluster.web_url, cluster.operator_token) == expected, f"status shows {expected}")


def test_crash_looping_worker_is_left_down_after_the_cap(cluster_factory: ClusterFactory) -> None:
    events: list[str] = []
    policy = RestartPolicy(base_delay=0.1, max_delay=0.2, window=10.0, max_rapid=3)
    cluster = cluster_factory(workers=1, restart_policy=policy, on_event=events.append)
    [healthy_worker] = cluster.worker_ids
    # A bad setting: this worker exits with code 2 as soon as it starts, every time.
    cluster.add_worker(wait=False, env={"GEMINI_TIMEOUT_SECONDS": "soon"})
    wait_until(lambda: cluster.given_up, "the supervisor gave up on the crashing worker")
    assert cluster.given_up == {"worker-4": 2}
    assert [(r.name, r.replacement) for r in cluster.restarts] == [("worker-2", "worker-3"), ("worker-3", "worker-4")]
    assert events[-1] == (
        "worker-4 exited 3 times in a row within 10 s of starting (last: exited with code 2); not restarting it again"
    )
    time.sleep(1.0)  # on purpose: no further restart comes (one would within 0.5 s)
    assert len(cluster.restarts) == 2
    assert cluster.worker_ids == [healthy_worker]
    assert "worker-5" not in cluster.processes


def test_killed_master_comes_back_on_the_same_ports_with_the_same_journal(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1)
    [worker] = cluster.worker_ids
    before = cluster.processes["master"].pid
    assert environ(before)["JOURNAL_PATH"] == str(cluster.journal_path)
    cluster.kill_master(signal.SIGKILL)
    wait_until(lambda: cluster.processes["master"].pid != before, "a new master was started")
    wait_until(lambda: healthy(cluster.web_url), "the new master's /healthz says 200")
    [restart] = cluster.restarts
    assert (restart.name, restart.returncode, restart.detail) == ("master", -signal.SIGKILL, "on the same ports")
    env = environ(cluster.processes["master"].pid)
    assert env["JOURNAL_PATH"] == str(cluster.journal_path)
    assert (env["WEB_PORT"], env["GRPC_PORT"]) == (str(cluster.config.web_port), str(cluster.config.grpc_port))
    wait_until(
        lambda: states(cluster.web_url, cluster.operator_token).get(worker) == "idle",
        "the worker is known to the new master",
    )


async def test_broker_restart_brings_the_master_and_every_worker_back(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=1.0)
    before = cluster.processes["mosquitto"].pid
    cluster.restart_broker()
    assert cluster.processes["mosquitto"].pid != before
    assert cluster.restarts == []  # on purpose: not a crash to recover from
    await asyncio.to_thread(wait_until, lambda: healthy(cluster.web_url), "/healthz says 200 again")
    both_idle = {w: "idle" for w in cluster.worker_ids}
    await asyncio.to_thread(
        wait_until, lambda: states(cluster.web_url, cluster.operator_token) == both_idle, "both workers idle"
    )
    # Both workers idle at once get one question each: each must have reconnected and resubscribed.
    async with ChatClient(cluster.web_url) as user:
        await asyncio.gather(user.ask("after the restart 1"), user.ask("after the restart 2"))
        answered = await user.wait_answers(2, timeout=30)
    assert {e.answer.workerId for e in answered if e.answer} == set(cluster.worker_ids)


def test_queued_task_survives_a_broker_restart(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=0)
    topic = Topics(cluster.config.topic_prefix).tasks("go-worker-away")
    away = Peer(cluster.mqtt_port, cluster.credentials.login("worker"), "go-worker-away", clean_session=False)
    away.ready().subscribe(topic)
    away.close()
    master = Peer(cluster.mqtt_port, cluster.credentials.login("master")).ready()
    master.publish(topic, b"queued while away")
    master.close()
    cluster.restart_broker()
    back = Peer(cluster.mqtt_port, cluster.credentials.login("worker"), "go-worker-away", clean_session=False)
    try:
        back.ready()
        assert back.received_until(b"queued while away") == [(topic, b"queued while away")]
    finally:
        back.close()


def test_deliberate_stops_and_restarts_are_not_fought(cluster_factory: ClusterFactory) -> None:
    events: list[str] = []
    cluster = cluster_factory(workers=2, on_event=events.append)
    gone, kept = cluster.worker_ids
    master_before = cluster.processes["master"].pid
    cluster.stop_worker(gone)
    cluster.restart_master()
    cluster.restart_broker()
    time.sleep(1.5)  # the supervisor restarts after 0.5 s
    assert cluster.restarts == [] and events == []
    assert cluster.worker_ids == [kept]
    assert set(cluster.processes) == {"mosquitto", "master", "worker-1", "worker-2"}
    assert cluster.processes["master"].pid != master_before
    cluster.stop()
    time.sleep(1.0)  # on purpose: nothing the lab stopped is restarted (a restart would come after 0.5 s)
    assert set(cluster.processes) == {"mosquitto", "master", "worker-1", "worker-2"}
    assert not any(p.alive for p in cluster.processes.values())


def test_paused_worker_stays_and_does_not_hold_up_stop(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1)
    [worker] = cluster.worker_ids
    cluster.signal_worker(worker, signal.SIGSTOP)
    time.sleep(1.0)  # on purpose: a hung worker is not taken for dead (a restart would come after 0.5 s)
    assert cluster.worker_ids == [worker] and cluster.restarts == []  # hung, not dead
    started = time.monotonic()
    cluster.stop()
    assert time.monotonic() - started < 4.0  # not the 5 s grace before SIGKILL
    assert cluster.processes["worker-1"].returncode == 0


def test_without_restart_a_killed_master_stays_down_until_restart_master(cluster_factory: ClusterFactory) -> None:
    cluster: LocalCluster = cluster_factory(workers=1, restart=False)
    cluster.kill_master(signal.SIGKILL)
    time.sleep(1.5)  # on purpose: without restart, it stays down (a restart would come after 0.5 s)
    assert not cluster.processes["master"].alive and not healthy(cluster.web_url)
    cluster.restart_master()
    assert healthy(cluster.web_url) and cluster.restarts == []


# -- lab up ---------------------------------------------------------------------------------------------------


def _worker_pids(lab: LabUp) -> list[int]:
    """The pids of the workers `lab up` runs now."""
    pids = []
    for pid in marked_pids(lab.marker):
        try:
            if b"services.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return sorted(pids)


def _stop(lab: LabUp) -> None:
    """SIGTERM `lab up`; it must exit 0 and leave nothing behind."""
    lab.proc.send_signal(signal.SIGTERM)
    try:
        assert lab.proc.wait(timeout=STOP_TIMEOUT_S) == 0, lab.output()
    except subprocess.TimeoutExpired:
        pytest.fail(f"lab up still running {STOP_TIMEOUT_S} s after SIGTERM:\n{lab.output()}")
    left = wait_gone(lab.marker, 2.0)
    assert not left, f"left behind:\n{describe_pids(left)}"


def test_lab_up_replaces_a_worker_killed_from_outside() -> None:
    lab = LabUp()
    try:
        ready = lab.wait_for(r"^ready: .* chat at (http://\S+) .*#token=(\S+)", READY_TIMEOUT_S)
        url, token = ready.group(1), ready.group(2)
        victim_pid = _worker_pids(lab)[0]
        env = environ(victim_pid)
        victim = env["WORKER_ID"]
        os.kill(victim_pid, signal.SIGKILL)
        line = lab.wait_for(r"^lab up: restarted worker-\d \(killed by SIGKILL\) as worker-3 \((\S+)\)$", 15)
        newcomer = line.group(1)
        wait_until(lambda: states(url, token).get(newcomer) == "idle", "the new worker registered")
        wait_until(lambda: states(url, token).get(victim) == "offline", "the killed worker is offline")
        assert len(_worker_pids(lab)) == 2
        _stop(lab)
        # The services log in with the cluster's passwords, and no line ever shows one.
        assert env["MQTT_USERNAME"] == "worker"
        assert env["MQTT_PASSWORD"] not in lab.output()
    finally:
        lab.cleanup()


def test_lab_up_with_no_restart_leaves_a_dead_worker_dead() -> None:
    lab = LabUp("--no-restart")
    try:
        lab.wait_for(r"^ready: ", READY_TIMEOUT_S)
        os.kill(_worker_pids(lab)[0], signal.SIGKILL)
        lab.wait_for(r"^lab up: worker-\d exited unexpectedly \(killed by SIGKILL\); the others keep running$", 10)
        time.sleep(2.0)  # with restart, a new worker would be up by now
        assert "restarted" not in lab.output()
        assert len(_worker_pids(lab)) == 1
        _stop(lab)
    finally:
        lab.cleanup()
