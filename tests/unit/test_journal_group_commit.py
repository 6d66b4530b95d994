"""Group commit: the journal's writes of one turn of the event loop are one transaction, and the two
promises (a question accepted, a result accepted) are made only once their write is committed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from services.master.dispatch import Task
from services.master.journal import Journal
from services.protocol import AiResponse
from tests.unit.master_fakes import SESSION, started


def task(task_id: str) -> Task:
    return Task(task_id=task_id, session_id=SESSION, query="q", submitted_ms=1)


def committed(path: Path) -> dict[str, str]:
    """task id -> state as another connection (another process) reads the file: committed rows only."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT task_id, state FROM tasks").fetchall())
    finally:
        db.close()


def test_outside_an_event_loop_every_write_commits_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.accepted(task("t1"))
    assert committed(journal.path) == {"t1": "queued"}
    journal.close()


async def test_the_writes_of_one_turn_commit_together_at_the_next_turn(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.accepted(task("t1"))
    journal.accepted(task("t2"))
    t2 = task("t2")
    t2.attempt, t2.token, t2.worker_id, t2.assigned_ms = 1, "tok", "w", 2
    journal.assigned(t2)
    assert committed(journal.path) == {}  # not yet: one transaction, open until the turn ends
    changes = journal._db.total_changes
    await asyncio.sleep(0)  # the next turn: the scheduled commit has run
    assert committed(journal.path) == {"t1": "queued", "t2": "assigned"}
    assert journal._db.total_changes == changes  # a commit changes no rows: three writes, one commit
    journal.close()


async def test_durable_returns_once_the_write_is_committed_and_at_once_when_nothing_waits(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    await journal.durable()  # nothing written: nothing to wait for
    journal.accepted(task("t1"))
    await journal.durable()
    assert committed(journal.path) == {"t1": "queued"}
    journal.close()


async def test_many_promises_awaited_in_one_turn_share_one_commit(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")

    async def accept(task_id: str) -> dict[str, str]:
        journal.accepted(task(task_id))
        await journal.durable()
        return committed(journal.path)

    seen = await asyncio.gather(*(accept(f"t{i}") for i in range(5)))
    # Each caller, once its promise held, found all five committed: they went in together.
    assert all(len(rows) == 5 for rows in seen)
    journal.close()


async def test_a_question_is_committed_before_its_acknowledgement_returns(tmp_path: Path) -> None:
    r = await started(journal=Journal(tmp_path / "j.sqlite3"))
    task_id = await r.ask()
    assert committed(r.journal.path) == {task_id: "queued"}  # no worker: still queued, and on disk


async def test_a_result_is_committed_before_its_acknowledgement_returns(tmp_path: Path) -> None:
    r = await started(journal=Journal(tmp_path / "j.sqlite3"))
    await r.worker("go-worker-a")
    task_id = await r.ask()
    accepted, _ = await r.answer(r.last_task("go-worker-a"))
    assert accepted
    assert committed(r.journal.path) == {task_id: "answered"}  # kept until the user acknowledges it


async def test_close_commits_what_is_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.accepted(task("t1"))
    journal.finished(
        task("t1"),
        AiResponse(taskId="t1", query="q", response="a", workerId="w", processingTime=1, timestamp=2),
        False,
        3,
    )
    journal.close()
    assert committed(journal.path) == {"t1": "answered"}
