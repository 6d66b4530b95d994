"""Nothing lost: workers killed or hung, the master killed, the broker restarted, results lost."""

from __future__ import annotations

import asyncio
import signal

from lab.loadgen.client import ChatClient, Exchange
from tests.conftest import ClusterFactory
from tests.waiting import eventually


async def assigned_worker(exchange: Exchange) -> str:
    await eventually(lambda: exchange.worker_id, "the question was assigned")
    return exchange.worker_id


def answered_once(exchanges: list[Exchange]) -> bool:
    failed = [e.answer for e in exchanges if e.answer is None or e.answer.error]
    assert not failed, failed  # say which, and why
    return True


async def test_task_survives_a_worker_killed_with_sigkill(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=2.0)
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("survive kill -9")
        victim = await assigned_worker(asked)
        cluster.kill_worker(victim, signal.SIGKILL)
        await user.wait_answers(1, timeout=30)
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
    assert asked.answer is not None and len(asked.answers) == 1
    assert asked.answer.workerId != victim and asked.answer.error == ""


async def test_task_of_a_hung_worker_goes_to_another_and_its_late_result_is_refused(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(workers=2, work_seconds=1.5, extra_env={"MQTT_KEEPALIVE": "2"})
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("survive SIGSTOP")
        victim = await assigned_worker(asked)
        cluster.signal_worker(victim, signal.SIGSTOP)  # hung: alive, silent
        try:
            await user.wait_answers(1, timeout=30)  # the broker's keepalive fires its Last Will
        finally:
            cluster.signal_worker(victim, signal.SIGCONT)
        await asyncio.sleep(3)  # the hung worker wakes up and sends its (stale) result
    assert asked.answer is not None and asked.answer.workerId != victim
    assert len(asked.answers) == 1


async def test_nothing_is_lost_when_the_master_is_killed_and_restarted(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=1.0)
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"before the crash {i}") for i in range(6)]  # 2 working, 4 queued
        await eventually(lambda: asked[0].worker_id and asked[1].worker_id, "two questions assigned")
        cluster.kill_master(signal.SIGKILL)
        cluster.restart_master()
        await user.wait_answers(6, timeout=60)  # the client reconnects with its session id
        await asyncio.sleep(0.5)  # on purpose: a third copy would arrive right after
    assert answered_once(asked)
    assert {e.answer.query for e in asked if e.answer} == {f"before the crash {i}" for i in range(6)}
    assert all(len(e.answers) <= 2 for e in asked)  # resent at most once after the reconnect


async def test_nothing_is_lost_when_the_broker_restarts(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=1.0)
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"through a broker restart {i}") for i in range(6)]
        await eventually(lambda: asked[0].worker_id, "a question was assigned")
        cluster.restart_broker()
        await user.wait_answers(6, timeout=60)
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
    assert answered_once(asked)
    assert all(len(e.answers) == 1 for e in asked)


async def test_answer_that_arrives_while_the_user_is_away_is_delivered_when_they_return(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=1.0)
    first = ChatClient(cluster.web_url)
    await first.connect()
    asked = await first.ask("answer me later")
    session_id = first.session_id
    await first.close()  # the user leaves before the answer
    await asyncio.sleep(2.0)  # on purpose: the answer (1 s of work) comes while the user is away
    async with ChatClient(cluster.web_url, session_id=session_id) as back:
        assert back.session_id == session_id
        await eventually(lambda: back.unclaimed.get(asked.task_id), "the kept answer was delivered")
    # Acknowledged once: a later visit does not get it again.
    async with ChatClient(cluster.web_url, session_id=session_id) as again:
        await asyncio.sleep(1.0)  # on purpose: an answer delivered twice would come within this
        assert not again.unclaimed
