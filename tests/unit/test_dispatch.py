"""Tests of the pure dispatch decisions: queue order, fair assignment, result checks and lost workers."""

from __future__ import annotations

import itertools
from collections import Counter, deque

import pytest

from services.master.dispatch import (
    Assignment,
    Dispatcher,
    Outcome,
    ResultClaim,
    Task,
    TaskState,
)
from services.master.registry import Worker, WorkerState


def make_dispatcher(*, max_attempts: int = 3, allow_baseline: bool = False) -> Dispatcher:
    """A dispatcher whose tokens are predictable: tok-1, tok-2, ..."""
    counter = itertools.count(1)
    return Dispatcher(
        max_attempts=max_attempts, allow_baseline=allow_baseline, new_token=lambda: f"tok-{next(counter)}"
    )


def task(n: int, now: int = 0) -> Task:
    return Task(task_id=f"t{n}", session_id=f"s{n}", query=f"question {n}", submitted_ms=now)


def online(d: Dispatcher, *worker_ids: str, start: int = 0) -> None:
    """Register workers one millisecond apart, in the order given."""
    for i, worker_id in enumerate(worker_ids):
        d.worker_online(worker_id, "python", start + i)


def claim_for(t: Task, worker_id: str | None = None) -> ResultClaim:
    """The claim an honest worker makes for the current attempt of `t`."""
    return ResultClaim(worker_id=worker_id or t.worker_id or "", task_id=t.task_id, attempt=t.attempt, token=t.token)


def worker_of(d: Dispatcher, worker_id: str) -> Worker:
    found = d.registry.get(worker_id)
    assert found is not None, f"{worker_id} is unknown"
    return found


def assigned(outcome: Outcome) -> list[tuple[str, str]]:
    return [(a.task.task_id, a.worker_id) for a in outcome.assignments]


# -- queue order and positions -------------------------------------------------------------------


def test_tasks_wait_in_the_queue_with_positions_when_no_worker_is_online() -> None:
    d = make_dispatcher()
    positions = [d.submit(task(n), n)[0] for n in (1, 2, 3)]
    assert positions == [1, 2, 3]
    assert [(pos, t.task_id) for pos, t in d.queued()] == [(1, "t1"), (2, "t2"), (3, "t3")]
    assert d.queue_length == 3


def test_queued_tasks_are_assigned_in_fifo_order() -> None:
    d = make_dispatcher()
    for n in (1, 2, 3):
        d.submit(task(n), n)
    outcome = d.worker_online("a", "python", 10)
    assert assigned(outcome) == [("t1", "a")]
    order = ["t1"]
    current = outcome.assignments[0].task
    for now in (20, 30):
        verdict = d.result(claim_for(current), now)
        current = verdict.outcome.assignments[0].task
        order.append(current.task_id)
    assert order == ["t1", "t2", "t3"]


def test_submit_returns_position_zero_when_a_worker_takes_the_task_at_once() -> None:
    d = make_dispatcher()
    online(d, "a")
    position, outcome = d.submit(task(1), 5)
    assert position == 0
    assert assigned(outcome) == [("t1", "a")]
    assert d.queue_length == 0


def test_submit_returns_the_nth_position_when_all_workers_are_busy() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.submit(task(1), 1)
    results = [d.submit(task(n), n) for n in (2, 3, 4)]
    assert [pos for pos, _ in results] == [1, 2, 3]
    assert all(outcome.assignments == [] for _, outcome in results)


def test_queued_positions_move_up_when_the_head_of_the_queue_is_assigned() -> None:
    d = make_dispatcher()
    online(d, "a")
    first = d.submit(task(1), 1)[1].assignments[0].task
    for n in (2, 3, 4):
        d.submit(task(n), n)
    d.result(claim_for(first), 10)
    assert [(pos, t.task_id) for pos, t in d.queued()] == [(1, "t3"), (2, "t4")]


def test_duplicate_task_id_raises() -> None:
    d = make_dispatcher()
    d.submit(task(1), 1)
    with pytest.raises(ValueError, match="duplicate task id t1"):
        d.submit(task(1), 2)
    assert d.queue_length == 1


# -- fair assignment ---------------------------------------------------------------------------


def test_task_goes_to_the_worker_idle_longest() -> None:
    d = make_dispatcher()
    online(d, "a", "b", "c")
    assert assigned(d.submit(task(1), 10)[1]) == [("t1", "a")]
    assert assigned(d.submit(task(2), 11)[1]) == [("t2", "b")]


def test_worker_freed_by_a_result_goes_behind_workers_idle_for_longer() -> None:
    d = make_dispatcher()
    online(d, "a", "b")
    t1 = d.submit(task(1), 10)[1].assignments[0].task
    d.result(claim_for(t1), 20)
    # b has been idle since 1, a only since 20.
    assert assigned(d.submit(task(2), 30)[1]) == [("t2", "b")]
    assert assigned(d.submit(task(3), 31)[1]) == [("t3", "a")]


def test_load_spreads_evenly_over_many_tasks() -> None:
    d = make_dispatcher()
    workers = ["a", "b", "c", "d"]
    online(d, *workers)
    pending: deque[Assignment] = deque()
    for n in range(1, 103):
        pending.extend(d.submit(task(n), 100 + n)[1].assignments)
    per_worker: Counter[str] = Counter()
    answered: list[str] = []
    now = 1000
    while pending:
        a = pending.popleft()
        now += 1
        verdict = d.result(claim_for(a.task), now)
        assert verdict.accepted
        per_worker[a.worker_id] += 1
        answered.append(a.task.task_id)
        pending.extend(verdict.outcome.assignments)
    assert sorted(answered) == sorted(f"t{n}" for n in range(1, 103))
    assert set(per_worker) == set(workers)
    assert max(per_worker.values()) - min(per_worker.values()) <= 1
    assert [worker_of(d, w).tasks_done for w in workers] == [per_worker[w] for w in workers]


def test_worker_is_busy_at_the_moment_of_assignment_and_never_gets_two_tasks() -> None:
    d = make_dispatcher()
    online(d, "a")
    position, outcome = d.submit(task(1), 1)
    assert (position, assigned(outcome)) == (0, [("t1", "a")])
    worker = d.registry.get("a")
    assert worker is not None
    assert (worker.state, worker.task_id) == (WorkerState.BUSY, "t1")
    assert d.registry.take_longest_idle() is None
    position, second = d.submit(task(2), 2)
    assert (position, second.assignments) == (1, [])
    assert worker.task_id == "t1"


def test_one_batch_of_idle_workers_gets_one_task_each() -> None:
    d = make_dispatcher()
    for n in (1, 2, 3, 4, 5):
        d.submit(task(n), n)
    outcomes = [d.worker_online(w, "python", 10 + i) for i, w in enumerate(("a", "b", "c"))]
    pairs = [p for o in outcomes for p in assigned(o)]
    assert pairs == [("t1", "a"), ("t2", "b"), ("t3", "c")]
    assert d.queue_length == 2


def test_assignment_sets_attempt_token_worker_and_time() -> None:
    d = make_dispatcher()
    online(d, "a")
    t = d.submit(task(1), 42)[1].assignments[0].task
    assert (t.state, t.attempt, t.token, t.worker_id, t.assigned_ms) == (TaskState.ASSIGNED, 1, "tok-1", "a", 42)


# -- results -----------------------------------------------------------------------------------


def test_result_with_current_attempt_token_and_worker_is_accepted() -> None:
    d = make_dispatcher()
    online(d, "a")
    t = d.submit(task(1), 1)[1].assignments[0].task
    verdict = d.result(claim_for(t), 5)
    assert (verdict.accepted, verdict.message, verdict.task) == (True, "accepted", t)
    assert d.task("t1") is None
    assert worker_of(d, "a").tasks_done == 1


def test_accepted_result_frees_the_worker_and_gives_it_the_next_queued_task() -> None:
    d = make_dispatcher()
    online(d, "a")
    t1 = d.submit(task(1), 1)[1].assignments[0].task
    d.submit(task(2), 2)
    verdict = d.result(claim_for(t1), 10)
    assert assigned(verdict.outcome) == [("t2", "a")]
    t2 = verdict.outcome.assignments[0].task
    assert (t2.attempt, t2.token, t2.assigned_ms) == (1, "tok-2", 10)
    assert worker_of(d, "a").task_id == "t2"


def test_accepted_result_with_empty_queue_leaves_the_worker_idle() -> None:
    d = make_dispatcher()
    online(d, "a")
    t1 = d.submit(task(1), 1)[1].assignments[0].task
    verdict = d.result(claim_for(t1), 10)
    assert verdict.outcome.assignments == []
    assert d.registry.take_longest_idle() is d.registry.get("a")


def test_result_for_an_unknown_task_is_refused() -> None:
    d = make_dispatcher()
    online(d, "a")
    verdict = d.result(ResultClaim(worker_id="a", task_id="nope", attempt=1, token="tok-1"), 5)
    assert not verdict.accepted
    assert verdict.message == "refused: unknown task (or already finished)"
    assert verdict.task is None


def test_second_result_for_an_answered_task_is_refused() -> None:
    d = make_dispatcher()
    online(d, "a")
    t = d.submit(task(1), 1)[1].assignments[0].task
    first = d.result(claim_for(t), 5)
    again = d.result(claim_for(t), 6)
    assert first.accepted
    assert (again.accepted, again.message) == (False, "refused: unknown task (or already finished)")


def test_result_with_an_invalid_token_is_refused_and_changes_nothing() -> None:
    d = make_dispatcher()
    online(d, "a")
    t = d.submit(task(1), 1)[1].assignments[0].task
    forged = ResultClaim(worker_id="a", task_id="t1", attempt=1, token="guessed")
    verdict = d.result(forged, 5)
    assert (verdict.accepted, verdict.message) == (False, "refused: invalid token")
    assert d.task("t1") is t
    assert t.state is TaskState.ASSIGNED
    assert worker_of(d, "a").task_id == "t1"


def test_result_with_an_empty_token_is_refused() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.submit(task(1), 1)
    verdict = d.result(ResultClaim(worker_id="a", task_id="t1", attempt=1, token=""), 5)
    assert (verdict.accepted, verdict.message) == (False, "refused: invalid token")


def test_result_for_a_stale_attempt_is_refused() -> None:
    d = make_dispatcher()
    online(d, "a")
    t = d.submit(task(1), 1)[1].assignments[0].task
    verdict = d.result(ResultClaim(worker_id="a", task_id="t1", attempt=2, token=t.token), 5)
    assert (verdict.accepted, verdict.message) == (False, "refused: attempt 2 is not the current attempt")


def test_result_from_another_worker_is_refused_even_with_the_right_token() -> None:
    d = make_dispatcher()
    online(d, "a", "b")
    t = d.submit(task(1), 1)[1].assignments[0].task
    verdict = d.result(claim_for(t, worker_id="b"), 5)
    assert (verdict.accepted, verdict.message) == (False, "refused: task is assigned to another worker")
    assert d.task("t1") is t


def test_result_without_task_id_is_refused_when_baseline_workers_are_not_allowed() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.submit(task(1), 1)
    verdict = d.result(ResultClaim(worker_id="a", task_id="", attempt=0, token=""), 5)
    assert not verdict.accepted
    assert "must carry task_id and token" in verdict.message
    assert "ALLOW_BASELINE_WORKERS=true" in verdict.message
    assert d.task("t1") is not None


def test_baseline_result_is_matched_to_the_task_assigned_to_that_worker() -> None:
    d = make_dispatcher(allow_baseline=True)
    online(d, "python-worker-1", "python-worker-2")
    d.submit(task(1), 1)
    t2 = d.submit(task(2), 2)[1].assignments[0].task
    verdict = d.result(ResultClaim(worker_id="python-worker-2", task_id="", attempt=0, token=""), 5)
    assert (verdict.accepted, verdict.task) == (True, t2)
    assert d.task("t1") is not None


@pytest.mark.parametrize("worker_id", ["python-worker-2", "stranger"])
def test_baseline_result_from_a_worker_without_a_task_is_refused(worker_id: str) -> None:
    d = make_dispatcher(allow_baseline=True)
    online(d, "python-worker-1", "python-worker-2")
    d.submit(task(1), 1)
    verdict = d.result(ResultClaim(worker_id=worker_id, task_id="", attempt=0, token=""), 5)
    assert (verdict.accepted, verdict.message) == (False, f"refused: worker {worker_id} holds no task")


def test_results_with_task_id_are_still_checked_when_baseline_workers_are_allowed() -> None:
    d = make_dispatcher(allow_baseline=True)
    online(d, "a")
    d.submit(task(1), 1)
    verdict = d.result(ResultClaim(worker_id="a", task_id="t1", attempt=1, token="wrong"), 5)
    assert (verdict.accepted, verdict.message) == (False, "refused: invalid token")


def test_finish_records_how_the_task_ended() -> None:
    d = make_dispatcher()
    online(d, "a")
    t1 = d.submit(task(1), 1)[1].assignments[0].task
    d.submit(task(2), 1)
    t2 = d.result(claim_for(t1), 2).outcome.assignments[0].task
    d.finish(t1, failed=False)
    d.result(claim_for(t2), 3)
    d.finish(t2, failed=True)
    worker = d.registry.get("a")
    assert worker is not None
    assert (t1.state, t2.state) == (TaskState.ANSWERED, TaskState.FAILED)
    assert (worker.tasks_done, worker.tasks_failed) == (2, 1)


# -- worker status -----------------------------------------------------------------------------


def test_stale_idle_status_does_not_free_a_worker_holding_a_task() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.submit(task(1), 1)
    d.submit(task(2), 2)
    outcome = d.worker_status("a", "idle", 3)
    worker = d.registry.get("a")
    assert outcome.assignments == []
    assert worker is not None
    assert (worker.state, worker.task_id) == (WorkerState.BUSY, "t1")
    assert d.queue_length == 1


def test_busy_status_does_not_drop_the_assignment_the_master_holds() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.submit(task(1), 1)
    d.worker_status("a", "busy", 2)
    assert worker_of(d, "a").task_id == "t1"


def test_reregistration_while_holding_a_task_keeps_the_assignment() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.submit(task(1), 1)
    d.submit(task(2), 2)
    outcome = d.worker_online("a", "python", 3)
    assert outcome.assignments == []
    assert worker_of(d, "a").task_id == "t1"


def test_reregistration_of_an_idle_worker_keeps_its_place_in_the_idle_order() -> None:
    d = make_dispatcher()
    online(d, "a", "b")
    d.worker_online("a", "python", 5)
    assert assigned(d.submit(task(1), 6)[1]) == [("t1", "a")]


def test_idle_status_from_an_unknown_worker_admits_it_with_the_language_of_its_id() -> None:
    d = make_dispatcher()
    d.submit(task(1), 1)
    outcome = d.worker_status("go-worker-ab12", "idle", 2)
    worker = d.registry.get("go-worker-ab12")
    assert worker is not None
    assert worker.language == "go"
    assert assigned(outcome) == [("t1", "go-worker-ab12")]


def test_busy_status_from_an_unknown_worker_makes_it_known_but_not_assignable_until_idle() -> None:
    d = make_dispatcher()
    d.worker_status("java-worker-7", "busy", 1)
    worker = d.registry.get("java-worker-7")
    assert worker is not None
    assert (worker.state, worker.language, worker.task_id) == (WorkerState.BUSY, "java", None)
    position, outcome = d.submit(task(1), 2)
    assert (position, outcome.assignments) == (1, [])
    assert assigned(d.worker_status("java-worker-7", "idle", 3)) == [("t1", "java-worker-7")]


def test_offline_status_from_an_unknown_worker_is_ignored() -> None:
    d = make_dispatcher()
    outcome = d.worker_status("ghost", "offline", 1)
    assert (outcome.assignments, outcome.failures) == ([], [])
    assert d.registry.get("ghost") is None


def test_offline_worker_gets_no_task_until_it_comes_back() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.worker_status("a", "offline", 1)
    assert d.submit(task(1), 2)[0] == 1
    assert assigned(d.worker_online("a", "python", 3)) == [("t1", "a")]


def test_worker_back_from_offline_by_status_keeps_its_registered_language() -> None:
    d = make_dispatcher()
    d.worker_online("w1", "go", 0)
    d.worker_status("w1", "offline", 1)
    d.worker_status("w1", "idle", 2)
    worker = d.registry.get("w1")
    assert worker is not None
    assert (worker.state, worker.language) == (WorkerState.IDLE, "go")


# -- lost workers ------------------------------------------------------------------------------


def test_task_of_a_lost_worker_goes_to_the_front_of_the_queue() -> None:
    d = make_dispatcher()
    online(d, "a", "b")
    d.submit(task(1), 1)
    d.submit(task(2), 2)
    d.submit(task(3), 3)
    d.submit(task(4), 4)
    outcome = d.worker_status("a", "offline", 5)
    assert (outcome.assignments, outcome.failures) == ([], [])
    assert [t.task_id for _, t in d.queued()] == ["t1", "t3", "t4"]
    lost = d.task("t1")
    assert lost is not None
    assert (lost.state, lost.worker_id, lost.token) == (TaskState.QUEUED, None, "")


def test_requeued_task_is_reassigned_with_the_next_attempt_and_a_new_token() -> None:
    d = make_dispatcher()
    online(d, "a", "b")
    t1 = d.submit(task(1), 1)[1].assignments[0].task
    t2 = d.submit(task(2), 2)[1].assignments[0].task
    d.submit(task(3), 3)
    first_token = t1.token
    d.worker_status("a", "offline", 4)
    verdict = d.result(claim_for(t2), 5)
    assert assigned(verdict.outcome) == [("t1", "b")]
    assert (t1.attempt, t1.worker_id, t1.state) == (2, "b", TaskState.ASSIGNED)
    assert t1.token not in ("", first_token)
    assert [t.task_id for _, t in d.queued()] == ["t3"]


def test_task_of_a_lost_worker_goes_at_once_to_an_idle_worker() -> None:
    d = make_dispatcher()
    online(d, "a")
    d.submit(task(1), 1)
    online(d, "b", start=2)
    outcome = d.worker_status("a", "offline", 3)
    assert assigned(outcome) == [("t1", "b")]
    assert outcome.assignments[0].task.attempt == 2


def test_late_result_of_the_lost_worker_is_refused_after_reassignment() -> None:
    d = make_dispatcher()
    online(d, "a", "b")
    t1 = d.submit(task(1), 1)[1].assignments[0].task
    old = claim_for(t1)
    d.worker_status("a", "offline", 2)
    late = d.result(old, 3)
    assert (late.accepted, late.message) == (False, "refused: attempt 1 is not the current attempt")
    assert d.result(claim_for(t1), 4).accepted


def test_late_result_of_the_lost_worker_is_refused_while_its_task_is_queued() -> None:
    d = make_dispatcher()
    online(d, "a")
    t1 = d.submit(task(1), 1)[1].assignments[0].task
    old = claim_for(t1)
    d.worker_status("a", "offline", 2)
    late = d.result(old, 3)
    assert not late.accepted
    assert d.task("t1") is t1
    assert t1.state is TaskState.QUEUED


def test_task_fails_after_max_attempts_lost_workers() -> None:
    d = make_dispatcher(max_attempts=2)
    online(d, "a", "b")
    t1 = d.submit(task(1), 1)[1].assignments[0].task
    assert assigned(d.worker_status("a", "offline", 2)) == [("t1", "b")]
    outcome = d.worker_status("b", "offline", 3)
    assert outcome.assignments == []
    assert [f.task for f in outcome.failures] == [t1]
    assert "2 attempts were lost" in outcome.failures[0].message
    assert t1.state is TaskState.FAILED
    assert d.task("t1") is None
    assert (d.queue_length, d.in_flight) == (0, 0)


def test_failed_task_frees_the_queue_for_the_next_one() -> None:
    d = make_dispatcher(max_attempts=1)
    online(d, "a")
    d.submit(task(1), 1)
    d.submit(task(2), 2)
    outcome = d.worker_status("a", "offline", 3)
    assert [f.task.task_id for f in outcome.failures] == ["t1"]
    assert [t.task_id for _, t in d.queued()] == ["t2"]


# -- counts ------------------------------------------------------------------------------------


def test_counts_follow_the_queue_and_the_tasks_in_flight() -> None:
    d = make_dispatcher()
    online(d, "a", "b")
    for n in (1, 2, 3, 4, 5):
        d.submit(task(n), n)
    assert (d.queue_length, d.in_flight) == (3, 2)
    assert (d.registry.count(WorkerState.IDLE), d.registry.count(WorkerState.BUSY)) == (0, 2)
    d.worker_status("b", "offline", 6)
    assert (d.queue_length, d.in_flight) == (4, 1)
    assert (d.registry.count(WorkerState.BUSY), d.registry.count(WorkerState.OFFLINE)) == (1, 1)
