"""Unit tests of `Master` delivering answers: kept until acknowledged, sent again, dropped when old; and
what it shows of its state."""

from __future__ import annotations

from services.master.journal import Journal
from services.master.service import PURGE_EVERY_MS
from services.protocol import UserQuery
from tests.unit.master_fakes import OTHER_SESSION, SESSION, started


async def test_an_answer_is_kept_until_acknowledged_and_sent_again_when_the_session_returns() -> None:
    r = await started()
    await r.worker("go-worker-a")
    task_id = await r.ask()
    await r.answer(r.last_task())
    await r.master.session_connected(SESSION)  # a reconnect before the acknowledgement
    assert [a.taskId for a in r.sender.answers()] == [task_id, task_id]
    assert r.master.status().undelivered == 1
    r.sender.ack(task_id)
    assert r.master.status().undelivered == 0 and r.journal.pending_answers() == []
    r.sender.sent.clear()
    await r.master.session_connected(SESSION)
    assert r.sender.answers() == []


async def test_an_answer_nobody_acknowledges_is_dropped_after_the_retention_time() -> None:
    r = await started(answer_retention_seconds=3600)
    await r.worker("go-worker-a")
    await r.ask()
    await r.answer(r.last_task())
    r.clock.advance(PURGE_EVERY_MS)
    await r.master.tick()
    assert r.master.status().undelivered == 1  # a minute is not an hour
    r.clock.advance(3_600_000)
    await r.master.tick()
    assert r.master.status().undelivered == 0 and r.journal.pending_answers() == []


async def test_the_status_counts_workers_queue_and_answers_in_flight() -> None:
    r = await started()
    await r.worker("go-worker-a")
    await r.worker("java-worker-b")
    await r.status("java-worker-b", "offline")
    await r.ask("q1")
    await r.master.submit(SESSION, UserQuery(query="q2"))
    report = r.master.status()
    assert (report.idle, report.busy, report.offline, report.queue_length, report.in_flight) == (0, 1, 1, 1, 1)
    assert {(w.worker_id, w.state) for w in report.workers} == {("go-worker-a", "busy"), ("java-worker-b", "offline")}
    summary = r.master.status_summary()
    assert (summary.workers, summary.idle, summary.busy, summary.queued) == (1, 0, 1, 1)


async def test_the_answer_of_a_client_that_never_acknowledges_is_not_kept_once_sent() -> None:
    r = await started()
    await r.worker("go-worker-a")
    task_id = await r.ask(acks=False)  # a baseline client: no `user-query` acknowledgement asked for
    await r.answer(r.last_task())
    assert [a.taskId for a in r.sender.answers()] == [task_id]
    assert r.sender.sent[-1].on_ack is not None  # still asked to acknowledge: an ack would mark the session
    assert r.master.status().undelivered == 0 and r.journal.pending_answers() == []
    r.sender.ack(task_id)  # a late acknowledgement changes nothing
    assert r.master.status().undelivered == 0


async def test_the_answer_of_a_non_acknowledging_session_with_nobody_connected_waits_for_it() -> None:
    r = await started()
    await r.worker("go-worker-a")
    task_id = await r.ask(acks=False)
    r.sender.connections = 0  # the client is gone when the answer comes
    await r.answer(r.last_task())
    assert r.master.status().undelivered == 1 and len(r.journal.pending_answers()) == 1
    r.sender.connections = 1
    await r.master.session_connected(SESSION)
    assert [a.taskId for a in r.sender.answers()] == [task_id, task_id]


async def test_a_session_that_acknowledged_an_answer_keeps_the_next_ones_until_acknowledged() -> None:
    r = await started()
    await r.worker("go-worker-a")
    first = await r.ask("q1", acks=False)
    r.sender.connections = 0
    await r.answer(r.last_task())
    r.sender.connections = 1
    await r.master.session_connected(SESSION)
    r.sender.ack(first)  # it does acknowledge answers after all
    second = await r.ask("q2", acks=False)
    await r.answer(r.last_task())
    assert r.master.status().undelivered == 1
    await r.master.session_connected(SESSION)
    assert [a.taskId for a in r.sender.answers()][-2:] == [second, second]
    r.sender.ack(second)
    assert r.master.status().undelivered == 0


async def test_a_restarted_master_has_no_answer_a_non_acknowledging_client_already_got() -> None:
    journal = Journal(":memory:")
    r = await started(journal)
    await r.worker("go-worker-a")
    await r.ask("q1", acks=False)
    await r.answer(r.last_task())
    kept = await r.ask("q2", session_id=OTHER_SESSION)
    await r.answer(r.last_task())
    again = await started(journal)
    assert again.master.status().undelivered == 1
    await again.master.session_connected(OTHER_SESSION)
    assert [a.taskId for a in again.sender.answers(OTHER_SESSION)] == [kept]


async def test_sessions_known_to_acknowledge_are_forgotten_after_the_retention_time() -> None:
    r = await started(answer_retention_seconds=60)
    r.master.deliveries.expects_acks(SESSION)
    r.clock.advance(PURGE_EVERY_MS + 61_000)
    await r.master.tick()
    assert not r.master.deliveries.acknowledges(SESSION)
