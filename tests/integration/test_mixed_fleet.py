"""A fleet of Python, Go and Java workers, as the original system ran it: one queue, one contract, every
question answered once, the work spread evenly whatever the language."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

from lab.loadgen.client import ChatClient
from lab.system.presets import limits_lifted
from lab.system.workers import LANGUAGES, worker_kind
from services.protocol.worker_ids import worker_language
from tests.conftest import ClusterFactory, require
from tests.waiting import eventually


def require_all_languages() -> None:
    """The Go and Java workers must be built (CI builds them; locally this skips with how to build)."""
    for language in LANGUAGES:
        problem = worker_kind(language).problem()
        require(f"the {language} worker", problem is None, problem or "")


async def test_a_fleet_of_two_of_each_language_answers_sixty_questions_once_and_evenly(
    cluster_factory: ClusterFactory,
) -> None:
    require_all_languages()
    # 60 questions at once from one address is a load test's pattern, not a person's: the limits are lifted.
    cluster = cluster_factory(workers="python=2,go=2,java=2", work_seconds=0.5, extra_env=limits_lifted())
    assert Counter(worker_language(w) for w in cluster.worker_ids) == {"python": 2, "go": 2, "java": 2}
    users = [ChatClient(cluster.web_url) for _ in range(12)]
    await asyncio.gather(*(u.connect() for u in users))
    try:
        # Five questions each, all asked at once: the queue holds most of them at first.
        exchanges = [e for u in users for e in await asyncio.gather(*(u.ask(f"q{id(u) % 997}-{i}") for i in range(5)))]
        assert all(e.task_id for e in exchanges), [e.ack for e in exchanges if not e.task_id]
        await asyncio.gather(*(u.wait_answers(5, timeout=90) for u in users))
        await asyncio.sleep(0.5)  # a duplicate would arrive right after
    finally:
        await asyncio.gather(*(u.close() for u in users))
    assert len(exchanges) == 60
    assert all(len(e.answers) == 1 for e in exchanges), [e.query for e in exchanges if len(e.answers) != 1]
    answers = [e.answer for e in exchanges if e.answer]
    assert all(a.error == "" and a.processingTime >= 500 for a in answers)
    per_worker = Counter(a.workerId for a in answers)
    assert set(per_worker) == set(cluster.worker_ids), per_worker
    assert max(per_worker.values()) - min(per_worker.values()) <= 1, per_worker


async def test_the_same_question_gets_the_same_offline_answer_from_every_language(
    cluster_factory: ClusterFactory,
) -> None:
    require_all_languages()
    cluster = cluster_factory(workers="python=1,go=1,java=1", work_seconds=0.3)
    question = "  Why is the sky blue?\tAsked\u00a0twice\x1c 🌈\u2003" + "é" * 300
    async with ChatClient(cluster.web_url) as user:
        for _ in range(3):  # one each: the master gives every idle worker a turn before any goes twice
            await user.ask(question)
        await user.wait_answers(3, timeout=30)
    answers = [e.answer for e in user.exchanges.values() if e.answer]
    assert {worker_language(a.workerId) for a in answers} == set(LANGUAGES)
    assert len({a.response for a in answers}) == 1, [(a.workerId, a.response[:80]) for a in answers]


async def test_a_crashed_worker_comes_back_in_its_own_language(cluster_factory: ClusterFactory) -> None:
    require_all_languages()
    cluster = cluster_factory(workers="go=1,java=1", work_seconds=0.2)
    before = set(cluster.worker_ids)
    for victim in sorted(before):
        cluster.signal_worker(victim, signal.SIGKILL)  # a crash, not a fault the lab injected: it is replaced

    def replaced() -> bool:
        now = set(cluster.worker_ids) - before
        return len(now) == 2 and all(w["state"] == "idle" for w in cluster.status()["workers"] if w["worker_id"] in now)

    await eventually(replaced, "the crashed workers replaced", timeout=30)
    assert sorted(worker_language(w) or "" for w in set(cluster.worker_ids) - before) == ["go", "java"]
