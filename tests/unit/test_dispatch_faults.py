"""Pure decisions when attempts are lost: leases, held assignments, lost messages and results, restarts."""

from __future__ import annotations

from services.master.dispatch import Dispatcher, Task, TaskState
from services.master.registry import WorkerState
from tests.unit.test_dispatch import assigned, claim_for, make_dispatcher, online, task, worker_of


def test_a_lease_that_runs_out_requeues_the_task_and_benches_the_worker() -> None:
    d = Dispatcher(lease_ms=1_000)
    online(d, "slow")
    t = task(1)
    d.submit(t, 0)
    assert t.lease_until_ms == 1_000
    assert d.expire(999).requeued == []
    outcome = d.expire(1_000)
    assert [r.task.task_id for r in outcome.requeued] == ["t1"] and d.queue_length == 1
    slow = worker_of(d, "slow")
    assert slow.state is WorkerState.LOST  # not given more until it says idle, and not counted as busy
    assert (d.registry.count(WorkerState.BUSY), d.registry.count(WorkerState.LOST)) == (0, 1)
    assert assigned(d.worker_online("fresh", "python", 1_001)) == [("t1", "fresh")]
    assert t.attempt == 2


def test_a_lost_worker_that_reports_idle_gets_work_again() -> None:
    d = Dispatcher(lease_ms=1_000)
    online(d, "slow")
    d.submit(task(1), 0)
    d.expire(1_000)
    assert d.queue_length == 1  # nobody to give it to: the lost worker gets nothing
    assert assigned(d.worker_status("slow", "idle", 5_000, "t1", 1)) == [("t1", "slow")]
    assert worker_of(d, "slow").state is WorkerState.BUSY


def test_workers_offline_or_lost_for_long_are_forgotten_and_come_back_if_they_report() -> None:
    d = Dispatcher(lease_ms=1_000, forget_gone_after_ms=30_000)
    for name in ("gone", "hung", "fine"):
        online(d, name)
    d.submit(task(1), 0)  # to "gone", the longest idle
    d.submit(task(2), 0)  # to "hung"
    d.worker_status("gone", "offline", 100)
    d.expire(1_000)  # t1 went back to the queue and to "fine"; "hung"'s lease runs out
    assert worker_of(d, "hung").state is WorkerState.LOST
    assert d.forget_gone(30_099) == []  # "gone" went offline at 100 and "hung" lost at 1_000: not yet 30 s
    assert [w.worker_id for w in d.forget_gone(30_101)] == ["gone"]
    assert [w.worker_id for w in d.forget_gone(31_001)] == ["hung"]
    assert d.registry.get("gone") is None and d.registry.get("hung") is None
    assert [d.registry.count(s) for s in WorkerState] == [0, 1, 0, 0]  # "fine" is busy with t1
    d.worker_status("hung", "idle", 40_000, "t2", 1)  # it wakes up: admitted again, given the queued t2
    assert worker_of(d, "hung").state is WorkerState.BUSY and worker_of(d, "hung").task_id == "t2"


def test_a_worker_that_announces_its_longest_task_gets_that_lease_plus_the_margin() -> None:
    d = Dispatcher(lease_ms=60_000, lease_margin_ms=15_000)
    d.worker_online("w", "python", 0, max_task_ms=40_000)
    t = task(1)
    d.submit(t, 100)
    assert t.lease_until_ms == 100 + 40_000 + 15_000


def test_nothing_is_assigned_while_held_and_the_queue_moves_on_release() -> None:
    d = make_dispatcher()
    online(d, "w")
    d.hold(True, 0)
    position, outcome = d.submit(task(1), 1)
    assert position == 1 and outcome.assignments == []
    assert assigned(d.hold(False, 2)) == [("t1", "w")]


def test_a_task_message_that_could_not_be_sent_requeues_the_task_and_keeps_the_worker() -> None:
    d = make_dispatcher()
    online(d, "w")
    t = task(1)
    d.submit(t, 0)
    first_token = t.token
    outcome = d.assignment_lost("t1", 1, 5)
    # Requeued, not counted, and not retried on the spot (the broker may be going away).
    assert [r.task.task_id for r in outcome.requeued] == ["t1"] and outcome.assignments == []
    assert t.attempt == 0 and worker_of(d, "w").state is WorkerState.IDLE
    assert assigned(d.expire(6)) == [("t1", "w")]  # the next lease check dispatches again
    assert t.attempt == 1 and t.token != first_token  # same number, new token: the lost one is stale
    assert d.assignment_lost("t1", 2, 7).requeued == []  # a report about another attempt changes nothing


def test_unsendable_task_messages_never_use_up_a_tasks_attempts() -> None:
    d = make_dispatcher(max_attempts=2)
    online(d, "w")
    t = task(1)
    d.submit(t, 0)
    for now in range(1, 10):
        assert d.assignment_lost("t1", t.attempt, now).failures == []
        d.expire(now)
    assert t.state is TaskState.ASSIGNED and t.attempt == 1


def test_idle_naming_the_awaited_task_means_the_result_was_lost() -> None:
    d = make_dispatcher()
    online(d, "w")
    t1, t2 = task(1), task(2)
    d.submit(t1, 0)
    d.submit(t2, 1)
    # An idle naming an older task, or an older attempt of this one, is stale: the assignment stands.
    assert d.worker_status("w", "idle", 2, task_id="t0", attempt=1).requeued == []
    assert d.worker_status("w", "idle", 2, task_id="t1", attempt=0).requeued == []
    assert d.worker_status("w", "idle", 2, task_id="t1").requeued == []  # which attempt? do not guess
    outcome = d.worker_status("w", "idle", 3, task_id="t1", attempt=1)
    assert [r.task.task_id for r in outcome.requeued] == ["t1"]
    assert assigned(outcome) == [("t1", "w")]  # the front of the queue again, before t2
    assert t1.attempt == 2


def test_restored_assignments_wait_for_their_worker_briefly_then_move_on() -> None:
    d = Dispatcher(lease_ms=60_000, restore_grace_ms=5_000)
    t = Task(
        task_id="t1",
        session_id="s",
        query="q",
        submitted_ms=0,
        attempt=1,
        token="tok",
        worker_id="gone",
        assigned_ms=0,
        state=TaskState.ASSIGNED,
    )
    waiting = Task(task_id="t2", session_id="s", query="q2", submitted_ms=1)
    d.restore([waiting, t], 10_000)
    assert d.queue_length == 1 and d.in_flight == 1 and worker_of(d, "gone").task_id == "t1"
    assert d.result(claim_for(t), 10_001).accepted  # its worker may still deliver with the old token
    d2 = Dispatcher(lease_ms=60_000, restore_grace_ms=5_000)
    t3 = Task(
        task_id="t3",
        session_id="s",
        query="q",
        submitted_ms=0,
        attempt=1,
        token="tok",
        worker_id="gone",
        assigned_ms=0,
        state=TaskState.ASSIGNED,
    )
    d2.restore([t3], 10_000)
    assert [r.task.task_id for r in d2.expire(15_000).requeued] == ["t3"]  # it never came back


def restored_task() -> Task:
    return Task(
        task_id="t1",
        session_id="s",
        query="q",
        submitted_ms=0,
        attempt=1,
        token="tok",
        worker_id="back",
        assigned_ms=9_000,
        state=TaskState.ASSIGNED,
    )


def test_a_restored_worker_that_registers_and_says_busy_keeps_its_task_under_the_normal_lease() -> None:
    d = Dispatcher(lease_ms=60_000, lease_margin_ms=15_000, restore_grace_ms=5_000, busy_after_register_ms=3_000)
    t = restored_task()
    d.restore([t], 10_000)
    d.worker_online("back", "python", 10_500, max_task_ms=20_000)
    d.worker_status("back", "busy", 10_510, "t1", 1)
    assert t.lease_until_ms == 9_000 + 20_000 + 15_000
    assert d.expire(16_000).requeued == []


def test_a_worker_that_registers_without_saying_busy_gives_its_task_back_within_seconds() -> None:
    # A new leader restored t1 as assigned to `back`, which never got it (the old leader died first) or lost it.
    d = Dispatcher(lease_ms=60_000, lease_margin_ms=15_000, restore_grace_ms=15_000, busy_after_register_ms=3_000)
    t = restored_task()
    d.restore([t], 10_000)
    d.worker_online("back", "python", 10_500, max_task_ms=20_000)
    assert d.expire(13_000).requeued == []  # it may still say busy
    outcome = d.expire(13_600)
    assert [r.task.task_id for r in outcome.requeued] == ["t1"]  # given back and at once assigned again...
    assert [a.task.task_id for a in outcome.assignments] == ["t1"]
    assert outcome.assignments[0].worker_id == "back" and t.attempt == 2  # ...to the worker, now free


def test_a_busy_naming_another_task_does_not_keep_the_held_one() -> None:
    d = Dispatcher(lease_ms=60_000, lease_margin_ms=15_000, restore_grace_ms=15_000, busy_after_register_ms=3_000)
    t = restored_task()
    d.restore([t], 10_000)
    d.worker_online("back", "python", 10_500, max_task_ms=20_000)
    d.worker_status("back", "busy", 10_510, "t-other", 1)
    assert [a.task.task_id for a in d.expire(14_000).assignments] == ["t1"] and t.attempt == 2


def test_sessions_count_their_unfinished_tasks() -> None:
    d = make_dispatcher()
    online(d, "w")
    a, b = task(1), Task(task_id="t2", session_id="s1", query="q", submitted_ms=0)
    d.submit(a, 0)
    d.submit(b, 0)
    assert d.unfinished("s1") == 2
    assert d.result(claim_for(a), 1).accepted
    assert d.unfinished("s1") == 1
