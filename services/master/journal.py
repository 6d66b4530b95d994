"""The task journal: every accepted task in SQLite until its answer was delivered (or kept long enough),
and the baseline workers the master knows (they never register again after a restart).

Writes happen on the event loop: with WAL and synchronous=NORMAL a commit costs tens of
microseconds and survives a crash of the process (kill -9); only a power loss may drop the
last commits. The file holds questions, tokens and users' keys until the task ends: it is
created readable by its owner only.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from services.master.dispatch import Task, TaskState
from services.protocol import AiResponse

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id      TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
    query        TEXT NOT NULL,
    api_key      TEXT,
    model        TEXT,
    submitted_ms INTEGER NOT NULL,
    state        TEXT NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    token        TEXT,
    worker_id    TEXT,
    assigned_ms  INTEGER NOT NULL DEFAULT 0,
    answer       TEXT,
    finished_ms  INTEGER,
    delivered_ms INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks(state) WHERE state IN ('queued', 'assigned', 'answered', 'failed');
CREATE TABLE IF NOT EXISTS workers (
    worker_id       TEXT PRIMARY KEY,
    language        TEXT NOT NULL,
    client_id       TEXT,
    longest_task_ms INTEGER NOT NULL DEFAULT 0
);
"""
OPEN_STATES = ("queued", "assigned")
FINISHED_STATES = ("answered", "failed")


@dataclass(frozen=True)
class PendingAnswer:
    """An answer (or failure) that has not reached its user yet."""

    task_id: str
    session_id: str
    payload: AiResponse
    finished_ms: int


@dataclass(frozen=True)
class KnownWorker:
    """A baseline worker online when last heard of: its MQTT client id, if the broker said, and the longest
    a task of it took."""

    worker_id: str
    language: str
    client_id: str | None
    longest_task_ms: int


class Journal:
    """Records each task's life so that a restarted master loses nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def accepted(self, task: Task) -> None:
        """A new task, before its user hears it was accepted."""
        self._db.execute(
            "INSERT INTO tasks (task_id, session_id, query, api_key, model, submitted_ms, state) "
            "VALUES (?, ?, ?, ?, ?, ?, 'queued')",
            (task.task_id, task.session_id, task.query, task.api_key or None, task.model, task.submitted_ms),
        )

    def assigned(self, task: Task) -> None:
        """A task's current attempt went to a worker."""
        self._db.execute(
            "UPDATE tasks SET state='assigned', attempt=?, token=?, worker_id=?, assigned_ms=? WHERE task_id=?",
            (task.attempt, task.token, task.worker_id, task.assigned_ms, task.task_id),
        )

    def requeued(self, task: Task) -> None:
        """A task went back to the queue (its attempt was lost)."""
        self._db.execute("UPDATE tasks SET state='queued', token=NULL, worker_id=NULL WHERE task_id=?", (task.task_id,))

    def finished(self, task: Task, payload: AiResponse, failed: bool, now_ms: int) -> None:
        """A task has its answer (or failed for good); the key and token are no longer needed."""
        self._db.execute(
            "UPDATE tasks SET state=?, answer=?, finished_ms=?, api_key=NULL, token=NULL WHERE task_id=?",
            ("failed" if failed else "answered", payload.model_dump_json(), now_ms, task.task_id),
        )

    def delivered(self, task_id: str, now_ms: int) -> None:
        """The user has the answer: the task leaves the journal."""
        self._db.execute("DELETE FROM tasks WHERE task_id=?", (task_id,))

    def open_tasks(self) -> list[Task]:
        """Tasks that were queued or assigned, to restore after a restart."""
        rows = self._db.execute(
            "SELECT task_id, session_id, query, api_key, model, submitted_ms, state, attempt, token, worker_id, "
            "assigned_ms FROM tasks WHERE state IN ('queued', 'assigned') ORDER BY submitted_ms"
        ).fetchall()
        return [
            Task(
                task_id=r[0],
                session_id=r[1],
                query=r[2],
                api_key=r[3] or "",
                model=r[4],
                submitted_ms=r[5],
                state=TaskState(r[6]),
                attempt=r[7],
                token=r[8] or "",
                worker_id=r[9],
                assigned_ms=r[10],
            )
            for r in rows
        ]

    def pending_answers(self) -> list[PendingAnswer]:
        """Answers that were not delivered yet, oldest first."""
        rows = self._db.execute(
            "SELECT task_id, session_id, answer, finished_ms FROM tasks "
            "WHERE state IN ('answered', 'failed') ORDER BY finished_ms"
        ).fetchall()
        return [PendingAnswer(r[0], r[1], AiResponse.model_validate_json(r[2]), r[3]) for r in rows]

    def purge(self, older_than_ms: int) -> int:
        """Drop undelivered answers finished before `older_than_ms`; returns how many."""
        cursor = self._db.execute(
            "DELETE FROM tasks WHERE state IN ('answered', 'failed') AND finished_ms < ?", (older_than_ms,)
        )
        return cursor.rowcount

    def worker_known(self, worker_id: str, language: str, client_id: str | None) -> None:
        """A baseline worker is online (on `client_id`, when known)."""
        self._db.execute(
            "INSERT INTO workers (worker_id, language, client_id) VALUES (?, ?, ?) ON CONFLICT(worker_id) "
            "DO UPDATE SET language=excluded.language, client_id=coalesce(excluded.client_id, client_id)",
            (worker_id, language, client_id),
        )

    def worker_longest(self, worker_id: str, longest_task_ms: int) -> None:
        """A baseline worker's longest task so far."""
        self._db.execute("UPDATE workers SET longest_task_ms=? WHERE worker_id=?", (longest_task_ms, worker_id))

    def worker_gone(self, worker_id: str) -> None:
        """A baseline worker went offline or was forgotten."""
        self._db.execute("DELETE FROM workers WHERE worker_id=?", (worker_id,))

    def known_workers(self) -> list[KnownWorker]:
        """The baseline workers online when last heard of, to remember after a restart."""
        rows = self._db.execute("SELECT worker_id, language, client_id, longest_task_ms FROM workers").fetchall()
        return [KnownWorker(*r) for r in rows]
