"""Unit tests of `Master` taking results: the answer to its user, the worker freed, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from services.protocol import AiResponse, ResultSummary, decode
from tests.unit.master_fakes import SESSION, TOPICS, Rig, started


async def one_assigned(**settings: Any) -> tuple[Rig, str]:
    r = await started(**settings)
    await r.worker("go-worker-a")
    return r, await r.ask("What is MQTT?")


async def test_an_accepted_result_is_delivered_to_its_user() -> None:
    r, task_id = await one_assigned()
    task = r.last_task("go-worker-a")
    r.clock.advance(50)
    assert await r.answer(task, "A broker protocol.") == (True, "accepted")
    (answer,) = r.sender.answers(SESSION)
    assert answer == AiResponse(
        taskId=task_id,
        query="What is MQTT?",
        response="A broker protocol.",
        workerId="go-worker-a",
        processingTime=7,
        timestamp=r.clock(),
        queryTimestamp=r.clock() - 50,
        model="offline",
        error="",
    )
    assert r.journal.open_tasks() == []
    assert [a.payload for a in r.journal.pending_answers()] == [answer]  # kept until acknowledged


async def test_an_accepted_result_frees_its_worker_for_the_next_question() -> None:
    r, _ = await one_assigned()
    second = await r.ask("q2")
    first_task = r.last_task("go-worker-a")
    assert first_task.task_id != second
    await r.answer(first_task)
    assert r.last_task("go-worker-a").task_id == second
    (worker,) = r.master.status().workers
    assert (worker.state, worker.current_task, worker.tasks_done) == ("busy", second, 1)


async def test_by_default_a_finished_task_puts_nothing_on_the_results_or_log_topics() -> None:
    r, _ = await one_assigned()
    before = len(r.publisher.on(TOPICS.logs))
    assert (await r.answer(r.last_task("go-worker-a"), "an answer"))[0]
    assert r.publisher.on(TOPICS.results) == []
    assert len(r.publisher.on(TOPICS.logs)) == before  # no line per task (TASK_MESSAGES is off)
    assert r.master.metrics.tasks.labels("answered")._value.get() == 1  # the metrics still count it


async def test_an_accepted_result_is_summarised_on_the_results_topic_without_text() -> None:
    r, task_id = await one_assigned(task_messages=True)
    await r.answer(r.last_task("go-worker-a"), "secret answer")
    (published,) = r.publisher.on(TOPICS.results)
    summary = decode(ResultSummary, published.payload)
    assert (summary.task_id, summary.worker_id, summary.language, summary.outcome, summary.attempt) == (
        task_id,
        "go-worker-a",
        "go",
        "answered",
        1,
    )
    assert b"secret answer" not in published.payload and b"What is MQTT" not in published.payload


async def test_a_failed_result_tells_the_user_in_error_and_in_response() -> None:
    r, _ = await one_assigned(task_messages=True)
    assert (await r.answer(r.last_task(), "", error="the model is down"))[0]
    (answer,) = r.sender.answers()
    assert (answer.error, answer.response, answer.failed) == ("the model is down", "the model is down", True)
    assert decode(ResultSummary, r.publisher.on(TOPICS.results)[0].payload).outcome == "failed"
    assert r.master.status().workers[0].tasks_failed == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"token": "forged"}, "refused: invalid token"),
        ({"worker_id": "go-worker-thief"}, "refused: task is assigned to another worker"),
        ({"attempt": 2}, "refused: attempt 2 is not the current attempt"),
        ({"task_id": "no-such-task"}, "refused: unknown task (or already finished)"),
        ({"task_id": ""}, "refused: results must carry task_id and token"),
    ],
    ids=["wrong token", "wrong worker", "other attempt", "unknown task", "baseline result"],
)
async def test_a_result_that_does_not_match_the_current_attempt_is_refused(
    changes: dict[str, object], message: str
) -> None:
    r, _ = await one_assigned()
    accepted, said = await r.answer(r.last_task(), "forged answer", **changes)
    assert not accepted and said.startswith(message)
    assert r.sender.answers() == [] and r.publisher.on(TOPICS.results) == []
    assert r.master.status().in_flight == 1  # the real worker may still answer
    assert (await r.answer(r.last_task()))[0]


async def test_a_second_result_for_an_answered_task_is_refused() -> None:
    r, _ = await one_assigned()
    task = r.last_task()
    assert (await r.answer(task, "first"))[0]
    assert await r.answer(task, "second") == (False, "refused: unknown task (or already finished)")
    assert [a.response for a in r.sender.answers()] == ["first"]


async def test_a_result_of_a_lost_attempt_is_refused_after_the_task_was_requeued() -> None:
    r, _ = await one_assigned()
    stale = r.last_task("go-worker-a")
    await r.worker("go-worker-b")
    await r.status("go-worker-a", "offline")
    current = r.last_task("go-worker-b")
    assert (current.task_id, current.attempt) == (stale.task_id, 2)
    accepted, message = await r.answer(stale)
    assert (accepted, message) == (False, "refused: attempt 1 is not the current attempt")
    assert (await r.answer(current))[0]
    assert [a.workerId for a in r.sender.answers()] == ["go-worker-b"]


async def test_results_from_baseline_workers_are_matched_by_worker_when_allowed() -> None:
    r = await started(allow_baseline_workers=True)
    await r.worker("java-worker-legacy")
    task_id = await r.ask()
    assert await r.answer(r.last_task(), "baseline answer", task_id="", attempt=0, token="") == (True, "accepted")
    assert [(a.taskId, a.response) for a in r.sender.answers()] == [(task_id, "baseline answer")]
