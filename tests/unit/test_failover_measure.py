"""The failover benchmark's measurement (lab/bench/failover_scenarios.py), on made-up questions and answers."""

from __future__ import annotations

from pathlib import Path

from lab.bench.failover_scenarios import (
    Attempt,
    FailoverResult,
    Question,
    distinct_answers,
    measure,
    old_leader_acks,
    result_rows,
    write_results,
)
from lab.loadgen.client import Exchange
from services.protocol import AiResponse


def answer(task: str, worker: str = "python-worker-aaaaaa", at: int = 1000) -> AiResponse:
    return AiResponse(
        taskId=task, query=task, response=f"answer {task}", workerId=worker, processingTime=5, timestamp=at
    )


def question(
    text: str, tries: list[tuple[float, float | None, bool]], answers: list[AiResponse], answered_at: float | None
) -> Question:
    q = Question(text, [Attempt(sent, acked, ok) for sent, acked, ok in tries])
    if any(ok for *_, ok in tries):
        q.exchange = Exchange(text, tries[-1][0], task_id=text, answers=answers, answered_at=answered_at)
    return q


def test_a_resend_after_a_reconnect_is_not_a_second_execution() -> None:
    assert distinct_answers([answer("t"), answer("t")]) == 1
    assert distinct_answers([answer("t"), answer("t", at=2000)]) == 2
    assert distinct_answers([answer("t"), answer("t", worker="python-worker-bbbbbb")]) == 2


def test_measure_times_from_the_fault() -> None:
    fault = 10.0
    questions = [
        question("before", [(9.0, 9.1, True)], [answer("before")], 14.0),  # acknowledged before, answered 4 s after
        # sent before the fault, retried after: its accepted try was sent after the fault
        question("across", [(9.9, None, False), (11.0, 11.5, False), (12.0, 16.0, True)], [answer("across")], 17.0),
        question("after", [(13.0, 15.0, True)], [answer("after"), answer("after", at=5)], 18.0),  # a duplicate
        question("lost", [(14.0, 14.5, True)], [], None),
        question("never", [(15.0, None, False)], [], None),
    ]
    result = FailoverResult("leader-node")
    measure(result, questions, [fault], start=6.0, direct=[])
    assert result.fault_at == [4.0]
    assert result.accepted_again_s == 4.5  # "lost", sent at 14.0, acknowledged at 14.5 (before "after"'s ack)
    assert result.all_answered_s == 4.0
    assert (result.accepted, result.answered, result.lost, result.duplicates) == (4, 3, 1, 1)
    assert result.tries == 7
    assert result.old_leader_acks is None
    assert result_rows([result])[0]["lost"] == 1


def test_nothing_accepted_after_the_fault_leaves_the_figure_open() -> None:
    result = FailoverResult("pause-leader")
    measure(result, [question("q", [(1.0, 1.1, True)], [], None)], [5.0], 0.0, [Attempt(5.5, 12.0, False)])
    assert result.accepted_again_s is None and result.all_answered_s is None
    assert result.old_leader_acks == 0


def test_old_leader_acks_count_acceptances_after_the_lease_of_questions_asked_after_the_fault() -> None:
    tries = [Attempt(1.0, 1.1, True), Attempt(2.0, 7.0, True), Attempt(3.0, 8.0, False), Attempt(4.0, None, False)]
    assert old_leader_acks(tries, fault=1.5, lease_end=6.0) == 1
    assert old_leader_acks(tries, fault=0.5, lease_end=0.9) == 2
    # Asked before the fault and acknowledged late: committed while it led (a kept promise), not counted.
    assert old_leader_acks(tries, fault=2.5, lease_end=6.0) == 0


def test_write_results(tmp_path: Path) -> None:
    result = FailoverResult("standby-node", accepted=3, answered=3)
    table, full = write_results([result], tmp_path / "out")
    assert table.read_text().splitlines()[0].startswith("scenario,")
    assert '"scenario": "standby-node"' in full.read_text()
