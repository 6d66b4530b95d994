"""The load generator against a real system: open-loop sends on schedule, closed-loop users one at a time."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import pytest

from lab.loadgen import LoadOptions, Question, closed_loop_async, load_corpus, open_loop_async
from lab.loadgen.arrivals import constant
from lab.system.presets import sessions_unlimited
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.integration

UNLIMITED = sessions_unlimited()
QUIET = LoadOptions(progress=False)


async def test_open_loop_sends_on_schedule_and_every_question_is_answered_once(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.1, extra_env=UNLIMITED)
    schedule = constant(10, 2.0)
    result = await open_loop_async(cluster.web_url, schedule, 5, load_corpus(), QUIET)
    assert (result.sent, result.acknowledged, result.answered) == (20, 20, 20)
    assert result.refused == result.failed == result.unanswered == result.duplicates == 0
    assert all(len(exchange.answers) == 1 for _, exchange in result.exchanges())
    assert sorted({q.user for q in result.questions}) == [0, 1, 2, 3, 4]
    # Typically a few ms; the margin is for a busy machine.
    assert result.max_send_lag_s() < 0.1
    sent = [q.sent_at - result.started for q in result.questions]
    assert sent == pytest.approx(schedule, abs=0.1)
    assert all(0.1 <= latency < 5 for latency in result.latencies_s())


async def test_closed_loop_users_wait_for_each_answer_before_asking_again(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.1, extra_env=UNLIMITED)
    result = await closed_loop_async(
        cluster.web_url, users=3, duration_s=2.0, think_time_s=0.1, corpus=load_corpus(), options=QUIET
    )
    per_user: dict[int, list[Question]] = defaultdict(list)
    for question in result.questions:
        per_user[question.user].append(question)
    assert sorted(per_user) == [0, 1, 2]
    for questions in per_user.values():
        assert sum(q.answered_at is not None for q in questions) >= 1
        for earlier, later in pairwise(questions):
            assert earlier.answered_at is not None and later.sent_at >= earlier.answered_at
    assert result.unanswered == result.refused == result.failed == 0
    # Three users who wait ~0.1 s of work and ~0.1 s of thought each ask several times in 2 s.
    assert result.answered >= 9
