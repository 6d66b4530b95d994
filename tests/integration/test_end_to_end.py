"""The whole system with real processes: answers arrive once each, evenly spread, with positions."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import httpx

from lab.loadgen.client import ChatClient
from tests.conftest import ClusterFactory
from tests.waiting import eventually


async def test_forty_questions_are_each_answered_once_and_spread_evenly(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=4, work_seconds=1.0)
    users = [ChatClient(cluster.web_url) for _ in range(40)]
    await asyncio.gather(*(u.connect() for u in users))
    try:
        exchanges = await asyncio.gather(*(u.ask(f"question {i}") for i, u in enumerate(users)))
        assert all(e.task_id for e in exchanges), [e.ack for e in exchanges if not e.task_id]
        await asyncio.gather(*(u.wait_answers(1, timeout=60) for u in users))
        await asyncio.sleep(0.5)  # a duplicate would arrive right after
    finally:
        await asyncio.gather(*(u.close() for u in users))
    assert all(len(e.answers) == 1 for e in exchanges)
    answers = [e.answer for e in exchanges if e.answer]
    assert {a.query for a in answers} == {f"question {i}" for i in range(40)}
    assert all(a.error == "" and "question" in a.response for a in answers)
    per_worker = Counter(a.workerId for a in answers)
    assert set(per_worker) == set(cluster.worker_ids)
    assert max(per_worker.values()) - min(per_worker.values()) <= 1, per_worker
    assert all(a.processingTime >= 1000 for a in answers)


async def test_waiting_user_is_told_the_queue_position(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.5)
    async with ChatClient(cluster.web_url) as user:
        first = await user.ask("first")
        second = await user.ask("second")
        third = await user.ask("third")
        assert first.ack.position == 0
        assert (second.ack.position, third.ack.position) == (1, 2)
        await user.wait_answers(3, timeout=20)
    # The third question moved up as the queue drained, and was told so.
    assert third.positions[:2] == [2, 1], third.positions
    assert [e.answer.workerId for e in (first, second, third) if e.answer] == cluster.worker_ids * 3
    order = sorted((first, second, third), key=lambda e: e.answered_at or 0)
    assert [e.query for e in order] == ["first", "second", "third"]


async def test_answers_go_only_to_the_session_that_asked(system: object) -> None:
    url = system.web_url  # type: ignore[attr-defined]
    async with ChatClient(url) as alice, ChatClient(url) as bob:
        assert alice.session_id != bob.session_id
        await alice.ask("alice's question")
        await alice.wait_answers(1, timeout=20)
        await asyncio.sleep(0.3)  # on purpose: a misrouted answer would reach bob right after
        assert bob.exchanges == {} and not bob.unclaimed


def test_status_health_and_metrics_describe_the_system(system: object) -> None:
    url = system.web_url  # type: ignore[attr-defined]
    health = httpx.get(f"{url}/healthz")
    assert health.status_code == 200 and health.json()["mqtt"] is True
    operator = system.operator_headers  # type: ignore[attr-defined]
    status = httpx.get(f"{url}/api/status", headers=operator).json()
    assert status["idle"] + status["busy"] == 2 and status["queue_length"] == 0
    assert {w["state"] for w in status["workers"]} <= {"idle", "busy"}
    assert all(w["worker_id"].startswith("python-worker-") for w in status["workers"])
    metrics = httpx.get(f"{url}/metrics", headers=operator).text
    for name in (
        "swarm_tasks_total",
        "swarm_queue_depth",
        'swarm_workers{state="idle"}',
        "swarm_task_latency_seconds_bucket",
        "swarm_overhead_seconds_bucket",
    ):
        assert name in metrics
    page = httpx.get(url)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert httpx.get(f"{url}/vendor/socket.io.min.js").status_code == 200
    assert httpx.get(f"{url}/static/..%2Fmaster%2Fsettings.py").status_code == 404


async def test_task_of_a_worker_stopped_mid_task_is_answered_by_another(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=3.0)
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("do not lose me")
        await eventually(lambda: asked.worker_id, "the question was assigned")
        first = asked.worker_id
        assert first in cluster.worker_ids
        cluster.kill_worker(first, signal.SIGTERM)  # a clean stop says "offline" before leaving
        [answered] = await user.wait_answers(1, timeout=20)
        await asyncio.sleep(0.5)  # on purpose: a duplicate would arrive right after
    assert answered.answer is not None and len(answered.answers) == 1
    assert answered.answer.workerId != first and answered.answer.error == ""
    workers = {w["worker_id"]: w for w in cluster.status()["workers"]}
    assert workers[first]["state"] == "offline"
