"""Unit tests of `Master` delivering answers: kept until acknowledged, sent again, dropped when old; and
what it shows of its state."""

from __future__ import annotations

from services.master.service import PURGE_EVERY_MS
from services.protocol import UserQuery
from tests.unit.master_fakes import SESSION, started


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
