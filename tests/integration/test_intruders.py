"""Clients without valid credentials get nothing; a flood on the log topic does not stop the system."""

from __future__ import annotations

import asyncio

from lab.loadgen.client import ChatClient
from tests.conftest import ClusterFactory
from tests.peers import peer_for
from tests.waiting import eventually


async def test_workers_with_a_wrong_or_no_password_never_join(cluster_factory: ClusterFactory) -> None:
    lines: list[str] = []
    cluster = cluster_factory(workers=1, work_seconds=0.2, log_sink=lambda name, line: lines.append(f"{name} | {line}"))
    wrong = cluster.add_worker(wait=False, env={"MQTT_PASSWORD": "not-the-password"})
    anonymous = cluster.add_worker(wait=False, env={"MQTT_USERNAME": "", "MQTT_PASSWORD": ""})

    def refused_by() -> set[str]:
        """The processes that said the broker refused them."""
        return {line.split(" | ")[0] for line in lines if "refused" in line.lower() or "not authori" in line.lower()}

    await eventually(lambda: len(refused_by()) >= 2, "both workers without the password tried and were refused")
    known = {w["worker_id"] for w in cluster.status()["workers"]}
    assert wrong not in known and anonymous not in known
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"only real workers answer {i}") for i in range(4)]
        await user.wait_answers(4, timeout=20)
    assert {e.answer.workerId for e in asked if e.answer} == set(cluster.worker_ids) - {wrong, anonymous}
    refused = [line for line in lines if "refused" in line.lower() or "not authori" in line.lower()]
    assert refused, "the rejected workers should say why they cannot connect"
    assert not [line for line in lines if "not-the-password" in line]


async def test_a_flood_on_the_log_topic_does_not_stop_answers(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.2)
    flooder = peer_for(cluster, "go-worker-flood")
    try:

        def flood() -> None:
            for i in range(20_000):
                flooder.client.publish(flooder.topics.logs, f'{{"source":"x","message":"flood {i}"}}', qos=0)

        flooding = asyncio.create_task(asyncio.to_thread(flood))
        async with ChatClient(cluster.web_url) as user:
            asked = [await user.ask(f"through the flood {i}") for i in range(4)]
            await user.wait_answers(4, timeout=30)
        await flooding
    finally:
        flooder.close()
    assert all(e.answer and e.answer.error == "" for e in asked)
    assert cluster.status()["mqtt_connected"] is True
