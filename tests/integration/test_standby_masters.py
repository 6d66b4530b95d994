"""Standby masters (issue 20): three masters on a real etcd cluster behind a real HAProxy, real Mosquitto and
workers; the leader killed, paused, restarted. Nothing accepted is lost, nothing is answered twice, and a
deposed leader acknowledges nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.loadgen.client import ChatClient, Exchange
from lab.system.ha import HaCluster
from services.health import check_master
from tests.conftest import clusters, require_mosquitto
from tests.etcd_cluster import require_etcd
from tests.integration.test_haproxy import require_haproxy
from tests.waiting import eventually

HaFactory = Callable[..., HaCluster]


@pytest.fixture
def ha_factory(tmp_path: Path) -> Iterator[HaFactory]:
    """Start HaClusters on free ports (their logs in the test's folder); every one is stopped at the end."""
    require_mosquitto()
    require_etcd()
    require_haproxy()
    yield from clusters(tmp_path, HaCluster, work_seconds=1.0, startup_timeout=45.0)


def answered_once(exchanges: list[Exchange]) -> bool:
    failed = [(e.query, e.answer) for e in exchanges if e.answer is None or e.answer.error]
    assert not failed, failed
    return True


async def ask_until_accepted(user: ChatClient, query: str, timeout: float) -> tuple[Exchange, float]:
    """Ask `query` again and again until a master accepts it; return it and when (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            asked = await user.ask(query, timeout=2.0)
        except Exception:  # disconnected, or no ack in time: the failover is not over
            await asyncio.sleep(0.1)
            continue
        if asked.ack.taskId:
            return asked, time.monotonic()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{query!r} was not accepted within {timeout} s")


def test_one_master_leads_and_the_others_stand_by(ha_factory: HaFactory) -> None:
    cluster = ha_factory(workers=1)
    leader, epoch = cluster.wait_leader()
    infos = {b.name: cluster.leader_info(b) for b in cluster.backends}
    assert [name for name, info in infos.items() if info and info["leading"]] == [leader.name]
    assert infos[leader.name] == {"leading": True, "epoch": epoch, "name": leader.name}
    for backend in cluster.backends:
        said = check_master(backend.host, backend.web_port, backend.host, backend.grpc_port)
        # A standby is healthy (its container is not restarted) but says it is one.
        assert ("standby" in said) == (backend != leader), said
    assert cluster.status()["workers"][0]["state"] == "idle"  # the operator's status, through the proxy


async def test_nothing_is_lost_when_the_leader_is_killed(ha_factory: HaFactory) -> None:
    cluster = ha_factory(workers=2, work_seconds=1.0)
    _, epoch = cluster.wait_leader()
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"before the crash {i}") for i in range(6)]  # 2 working, 4 queued
        await eventually(lambda: asked[0].worker_id and asked[1].worker_id, "two questions assigned")
        cluster.kill_master(signal.SIGKILL)
        killed = time.monotonic()
        after, accepted_at = await ask_until_accepted(user, "after the crash", timeout=30)
        _, new_epoch = cluster.wait_leader(after_epoch=epoch)
        await user.wait_answers(7, timeout=60)  # the client reconnected through the proxy with its session id
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
    assert new_epoch > epoch
    assert accepted_at - killed < 15, f"accepted again {accepted_at - killed:.1f} s after the leader's death"
    assert answered_once([*asked, after])
    assert {e.answer.query for e in asked if e.answer} == {f"before the crash {i}" for i in range(6)}
    assert all(len(e.answers) <= 2 for e in asked)  # resent at most once after the reconnect
    assert len({a.taskId for e in asked for a in e.answers}) == 6


async def test_a_leader_paused_past_its_lease_is_deposed_and_acknowledges_nothing(ha_factory: HaFactory) -> None:
    cluster = ha_factory(workers=1, work_seconds=0.5)
    old, epoch = cluster.wait_leader()
    process = cluster.master_process(old.name)
    async with ChatClient(f"http://{old.host}:{old.web_port}") as direct, ChatClient(cluster.web_url) as user:
        first = await direct.ask("before the pause")
        await direct.wait_answers(1, timeout=30)
        cluster.kill_named_master(old.name, signal.SIGSTOP)  # core and web front, as a frozen VM
        try:
            new, new_epoch = await asyncio.to_thread(cluster.wait_leader, 30.0, epoch)
            during, _ = await ask_until_accepted(user, "during the pause", timeout=30)
            await asyncio.sleep(max(0.0, 2 * cluster.lease_seconds - 5))  # paused for twice its lease at least
        finally:
            cluster.kill_named_master(old.name, signal.SIGCONT)
        try:  # the old leader wakes up believing it leads: it must not accept this
            late: Exchange | None = await direct.ask("to the old leader", timeout=5.0)
        except Exception:  # its connection went with it: nothing acknowledged either
            late = None
        await user.wait_answers(1, timeout=30)
        await eventually(lambda: process.returncode is not None, "the deposed leader exits", 15)
    assert new.name != old.name or new_epoch > epoch
    assert first.answer is not None and during.answer is not None and not during.answer.error
    assert late is None or not late.ack.taskId, late.ack
    assert process.returncode == 3  # deposed: its supervisor starts it again, as a standby
    cluster.wait_leader(after_epoch=epoch)


async def test_the_leader_reaches_workers_on_every_broker_and_loses_nothing_when_one_dies(
    ha_factory: HaFactory,
) -> None:
    cluster = ha_factory(workers=3, work_seconds=0.5)
    assert len(cluster.broker_ports) == 3  # one per node, each worker on its own
    async with ChatClient(cluster.web_url) as user:
        first = [await user.ask(f"through every broker {i}") for i in range(9)]
        await user.wait_answers(9, timeout=60)
        assert {e.answer.workerId for e in first if e.answer} == set(cluster.worker_ids)  # all three answered
        cluster.kill_named("mosquitto-2")  # its worker goes offline; the lab starts the broker again
        after = [await user.ask(f"one broker down {i}") for i in range(6)]
        await user.wait_answers(15, timeout=90)
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
    assert answered_once([*first, *after])
    assert all(len(e.answers) == 1 for e in [*first, *after])
