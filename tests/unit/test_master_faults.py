"""Unit tests of `Master` when attempts are lost, and across a restart: nothing lost, no answer twice."""

from __future__ import annotations

from services.master.journal import Journal
from tests.unit.master_fakes import SESSION, Clock, Rig, settle, started


async def two_workers() -> tuple[Rig, str]:
    """Worker a holds the only question; worker b is idle."""
    r = await started(lease_seconds=60)
    await r.worker("go-worker-a")
    task_id = await r.ask()
    await r.worker("go-worker-b")
    assert r.publisher.tasks("go-worker-b") == []
    return r, task_id


async def test_a_task_whose_worker_went_offline_goes_to_another_worker() -> None:
    r, task_id = await two_workers()
    first = r.last_task("go-worker-a")
    await r.status("go-worker-a", "offline")
    second = r.last_task("go-worker-b")
    assert (second.task_id, second.attempt) == (task_id, 2)
    assert second.token != first.token
    assert [(a.taskId, a.workerId) for a in r.sender.assigned()] == [(task_id, "go-worker-a"), (task_id, "go-worker-b")]
    assert r.journal.open_tasks()[0].worker_id == "go-worker-b"


async def test_a_task_whose_lease_ran_out_is_requeued_and_its_worker_left_alone() -> None:
    r, task_id = await two_workers()
    r.clock.advance(59_999)
    await r.master.tick()
    assert r.publisher.tasks("go-worker-b") == []  # the lease still runs
    r.clock.advance(1)
    await r.master.tick()
    assert (r.last_task("go-worker-b").task_id, r.last_task("go-worker-b").attempt) == (task_id, 2)
    await r.ask("q2")
    assert len(r.publisher.tasks("go-worker-a")) == 1  # hung or slow: no task until it says idle
    await r.status("go-worker-a", "idle")
    assert r.last_task("go-worker-a").query == "q2"


async def test_a_lease_is_sized_by_the_longest_task_the_worker_announced() -> None:
    r = await started(lease_seconds=600)
    await r.worker("go-worker-a", max_task_ms=1_000)
    await r.ask()
    r.clock.advance(1_000 + 15_000)  # its max_task_ms plus the margin
    await r.master.tick()
    assert r.master.status().queue_length == 1


async def test_idle_naming_the_awaited_attempt_means_its_result_was_lost() -> None:
    r, task_id = await two_workers()
    task = r.last_task("go-worker-a")
    await r.status("go-worker-a", "idle")  # an idle that names no task: stale, the assignment stands
    assert r.publisher.tasks("go-worker-b") == []
    await r.status("go-worker-a", "idle", task)
    assert r.last_task("go-worker-b").task_id == task_id


async def test_a_task_message_that_could_not_be_published_is_requeued_without_counting() -> None:
    r = await started()
    await r.worker("go-worker-a")
    r.publisher.failing = True
    task_id = await r.ask()
    await settle()
    assert r.master.status().queue_length == 1
    assert r.master.status().workers[0].state == "idle"
    assert [(t.state.value, t.worker_id) for t in r.journal.open_tasks()] == [("queued", None)]
    r.publisher.failing = False
    await r.master.tick()  # the next lease check dispatches again
    task = r.last_task("go-worker-a")
    assert (task.task_id, task.attempt, len(r.publisher.tasks())) == (task_id, 1, 2)


async def test_a_task_lost_too_often_fails_with_a_clear_answer() -> None:
    r = await started(max_attempts=2)
    await r.worker("go-worker-a")
    task_id = await r.ask()
    await r.status("go-worker-a", "offline")
    await r.worker("go-worker-a")
    assert r.last_task("go-worker-a").attempt == 2
    await r.status("go-worker-a", "offline")
    (answer,) = r.sender.answers(SESSION)
    assert answer.taskId == task_id and answer.workerId == ""
    assert answer.error == "Sorry, this question failed: 2 attempts were lost (its worker went offline)."
    assert answer.response == answer.error
    assert r.journal.open_tasks() == [] and len(r.journal.pending_answers()) == 1
    assert r.master.status().queue_length == 0


async def test_a_restarted_master_takes_back_open_tasks_and_undelivered_answers() -> None:
    journal, clock = Journal(":memory:"), Clock()
    before = await started(journal, clock)
    await before.worker("go-worker-a")
    answered = await before.ask("answered")
    running = await before.ask("running")
    await before.answer(before.last_task("go-worker-a"), "the answer")
    running_task = before.last_task("go-worker-a")
    assert running_task.task_id == running
    waiting = await before.ask("waiting")

    after = await started(journal, clock)
    assert after.master.status().queue_length == 1 and after.master.status().in_flight == 1
    await after.master.session_connected(SESSION)  # the user comes back to the new master
    assert [a.taskId for a in after.sender.answers()] == [answered]
    assert [(a.taskId, a.workerId) for a in after.sender.assigned()] == [(running, "go-worker-a")]
    # The worker of the running task delivers to the new master with the token it got from the old one.
    assert await after.answer(running_task) == (True, "accepted")
    assert after.last_task("go-worker-a").task_id == waiting
    assert after.last_task("go-worker-a").attempt == 1


async def test_a_restored_assignment_whose_worker_never_returns_is_requeued_soon() -> None:
    journal, clock = Journal(":memory:"), Clock()
    before = await started(journal, clock)
    await before.worker("go-worker-a")
    task_id = await before.ask()
    after = await started(journal, clock)
    clock.advance(15_000)  # the grace of a restored assignment, far shorter than a lease
    await after.master.tick()
    await after.worker("go-worker-b")
    assert (after.last_task("go-worker-b").task_id, after.last_task("go-worker-b").attempt) == (task_id, 2)


async def test_a_worker_forgotten_after_going_offline_has_its_broker_session_cleared() -> None:
    r = await started(forget_workers_after_seconds=1)
    await r.worker("go-worker-gone", max_task_ms=20_000)
    await r.worker("go-worker-hung", max_task_ms=20_000)
    await r.worker("python-worker-baseline")  # states no bound: the original's, with a clean session anyway
    await r.ask()  # to go-worker-gone, idle for longest
    await r.ask()  # to go-worker-hung
    await r.status("go-worker-gone", "offline")  # its Last Will: the connection is gone
    await r.status("python-worker-baseline", "offline")
    r.clock.advance(20_000 + 15_000)  # go-worker-hung's lease runs out: lost, maybe still connected
    await r.master.tick()
    r.clock.advance(1_001)
    await r.master.tick()
    assert r.master.dispatcher.registry.get("go-worker-gone") is None
    assert r.master.dispatcher.registry.get("go-worker-hung") is None
    assert r.publisher.cleared == ["go-worker-gone"]  # not a lost one (it may still be connected), not a baseline
