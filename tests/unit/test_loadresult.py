"""LoadResult: counts, send lag, latency from the schedule, throughput, from questions built by hand."""

from __future__ import annotations

import math

import pytest

from lab.loadgen import LoadResult, Question
from lab.loadgen.client import Exchange
from services.protocol import AiResponse, QueryAck


def answered(user: int, due: float, sent: float, answered_at: float, answers: int = 1) -> Question:
    exchange = Exchange(query="q", sent_at=sent, task_id=f"t-{user}-{due}", answered_at=answered_at)
    reply = AiResponse(taskId=exchange.task_id, query="q", response="a", workerId="w", processingTime=0, timestamp=0)
    exchange.answers = [reply] * answers
    return Question(user=user, query="q", scheduled_at=due, sent_at=sent, exchange=exchange)


def refused(user: int, due: float) -> Question:
    exchange = Exchange(query="q", sent_at=due, ack=QueryAck.refuse("too many questions"))
    return Question(user=user, query="q", scheduled_at=due, sent_at=due, exchange=exchange, error="too many")


def unanswered(user: int, due: float) -> Question:
    return Question(user=user, query="q", scheduled_at=due, sent_at=due, exchange=Exchange("q", due, task_id="t"))


def failed(user: int, due: float) -> Question:
    return Question(user=user, query="q", scheduled_at=due, sent_at=due + 0.5, error="TimeoutError")


def run(*questions: Question) -> LoadResult:
    return LoadResult(kind="open", users=2, started=100.0, ended=110.0, questions=list(questions))


def test_counts_tell_accepted_refused_failed_answered_and_unanswered_apart() -> None:
    result = run(answered(0, 100, 100, 101), refused(1, 101), unanswered(0, 102), failed(1, 103))
    assert (result.sent, result.acknowledged, result.refused, result.failed) == (4, 2, 1, 1)
    assert (result.answered, result.unanswered) == (1, 1)


def test_exchanges_are_the_accepted_questions_with_their_user() -> None:
    first, second = answered(0, 100, 100, 101), unanswered(1, 102)
    result = run(first, refused(1, 101), second, failed(0, 103))
    assert result.exchanges() == [(0, first.exchange), (1, second.exchange)]


def test_latency_counts_from_the_scheduled_time_so_a_late_send_is_not_hidden() -> None:
    result = run(answered(0, due=100.0, sent=100.3, answered_at=101.0))
    assert result.latencies_s() == pytest.approx([1.0])
    assert result.latencies_s(from_scheduled=False) == pytest.approx([0.7])


def test_send_lag_is_how_late_each_send_was() -> None:
    result = run(answered(0, 100.0, 100.01, 101), answered(1, 100.5, 100.75, 101), failed(0, 101.0))
    assert result.send_lags_s() == pytest.approx([0.01, 0.25, 0.5])
    assert result.max_send_lag_s() == pytest.approx(0.5)


def test_closed_loop_questions_have_no_send_lag() -> None:
    question = Question(user=0, query="q", sent_at=105.0)
    assert question.send_lag_s == 0.0
    assert LoadResult("closed", 1, 100.0, 110.0, []).max_send_lag_s() == 0.0


def test_duplicates_count_answers_beyond_the_first() -> None:
    result = run(answered(0, 100, 100, 101, answers=3), answered(1, 101, 101, 102))
    assert result.duplicates == 2


def test_throughput_is_answers_per_second_up_to_the_last_answer() -> None:
    result = run(answered(0, 100, 100, 101), answered(1, 101, 101, 102), answered(0, 102, 102, 104))
    assert result.throughput_per_s() == pytest.approx(3 / 4)
    assert run(unanswered(0, 100)).throughput_per_s() == 0.0


def test_summary_reports_milliseconds_and_nan_without_values() -> None:
    summary = run(answered(0, 100.0, 100.002, 100.1)).summary()
    assert summary["send_lag_ms_max"] == pytest.approx(2.0)
    assert summary["latency_ms_p50"] == pytest.approx(100.0)
    assert math.isnan(run(failed(0, 100)).summary()["latency_ms_p99"])
