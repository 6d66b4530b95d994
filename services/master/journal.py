"""The task journal: every accepted task in SQLite until its answer was delivered (or kept long enough),
and the baseline workers the master knows (they never register again after a restart).

Writes happen on the event loop, grouped: the writes of one turn of the loop form one transaction,
committed at the start of the next turn (group commit), so that many answers cost one commit. Only
two writes are promises that must be durable before someone hears of them: a question accepted
(before its user's acknowledgement) and a result accepted (before the worker's); their callers
await `durable()`. Any other write lost in a crash costs a reassignment or a second delivery,
never an accepted question. Outside an event loop (tools, tests) every write commits at once.
With WAL and synchronous=NORMAL a commit survives a crash of the process (kill -9); only a power
loss may drop the last commits. The file holds questions and tokens until the task ends: it is
created readable by its owner only.

Users' API keys never reach the file in the clear. With a journal key (JOURNAL_KEY: base64 of
32 random bytes) each is sealed with AES-256-GCM, a fresh nonce per row and the task id as
associated data; without one, keys stay in memory only and a task restored after a restart has
none (`keys_not_kept`). What a task leaves behind when it ends is overwritten (secure_delete)
and the WAL's old copies of pages are emptied by `checkpoint`, now and then and at `close`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from services.master.dispatch import Task
from services.master.journal_records import (
    FINISHED_STATES,
    KEY_BYTES,
    NONCE_BYTES,
    NOT_KEPT,
    OPEN_STATES,
    SEALED,
    JournalError,
    JournalKeyError,
    KeySealer,
    KnownWorker,
    PendingAnswer,
    TaskRecord,
    parse_journal_key,
    reveal_key,
)
from services.protocol import AiResponse

# Re-exported: the master and the tools import these from here.
__all__ = [
    "FINISHED_STATES",
    "KEY_BYTES",
    "NONCE_BYTES",
    "NOT_KEPT",
    "OPEN_STATES",
    "SEALED",
    "Journal",
    "JournalError",
    "JournalKeyError",
    "KeySealer",
    "KnownWorker",
    "PendingAnswer",
    "parse_journal_key",
]

log = logging.getLogger(__name__)

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
# 1: a journal written with secure_delete; an older one is vacuumed once, its freed pages may hold keys.
SCRUBBED_VERSION = 1


class Journal:
    """Records each task's life so that a restarted master loses nothing."""

    def __init__(self, path: str | Path, key: bytes | None = None, previous_keys: Sequence[bytes] = ()) -> None:
        """Open (or create) the journal at `path`; users' API keys are sealed with `key` (none: not written) and
        opened with it or one of `previous_keys` (a rotation: what those sealed is sealed again with `key`).
        JournalKeyError when the journal holds keys that none of them opens."""
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")  # what a row leaves behind is overwritten with zeros
        self._db.execute("PRAGMA temp_store=MEMORY")  # no temporary files beside it (VACUUM's copy)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._keys = KeySealer(key, previous_keys)
        # Without a current key, the users' keys of open tasks in memory only (for `open_tasks`): this run's, and
        # those read back at start from a journal that held them.
        self._carried: dict[str, str] = {}
        self._checkpointed = -1  # total_changes at the last checkpoint
        self._waiting: list[asyncio.Future[None]] = []  # callers of `durable` until the open transaction commits
        try:
            self._reseal()
            self._scrub()
        except Exception:
            self._db.close()
            raise
        self.checkpoint()

    def close(self) -> None:
        """Commit, empty the WAL into the database and close it."""
        self.commit()
        self.checkpoint()
        self._db.close()

    def _write(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run one write: in the open transaction of this turn of the loop (one is begun, and its commit
        scheduled, by the first write of a turn), or at once outside a loop."""
        if not self._db.in_transaction:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return self._db.execute(sql, params)  # no loop: autocommit
            self._db.execute("BEGIN")
            # call_soon runs after the callbacks already ready: every handler of this turn writes first.
            loop.call_soon(self._commit_scheduled)
        return self._db.execute(sql, params)

    def commit(self) -> None:
        """Commit the open transaction, if any, and wake who awaits `durable`; on failure the transaction's
        writes are rolled back, the error goes to them and is raised."""
        waiting, self._waiting = self._waiting, []
        try:
            if self._db.in_transaction:
                self._db.execute("COMMIT")
        except sqlite3.Error as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            for future in waiting:
                if not future.done():
                    future.set_exception(JournalError(f"the journal could not commit: {e}"))
            raise
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def _commit_scheduled(self) -> None:
        try:
            self.commit()
        except sqlite3.Error as e:  # the promises' callers got it; the loop goes on
            log.error("journal commit failed: %s", e)

    async def durable(self) -> None:
        """Return once every write made so far is committed (at once when nothing is pending); JournalError
        when the commit failed."""
        if not self._db.in_transaction:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        await future

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it, so that the older copies of pages (what ended tasks
        left) are gone from the disk's files; False when nothing was written since the last time, or a reader
        kept it from finishing."""
        self.commit()  # a checkpoint does not take what an open transaction holds
        changes = self._db.total_changes
        if changes == self._checkpointed:
            return False
        busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            return False
        self._checkpointed = changes
        return True

    def _reseal(self) -> None:
        """Bring the keys in the file to what this run writes: a key in the clear (an older version's journal) or
        sealed with a previous key is sealed with the current one, or, without a current key, not kept."""
        rows = self._db.execute(
            "SELECT task_id, api_key FROM tasks WHERE api_key IS NOT NULL AND api_key != ?", (NOT_KEPT,)
        ).fetchall()
        changed: list[tuple[str, str]] = []
        unreadable = 0
        for task_id, stored in rows:
            current = False
            if stored.startswith(SEALED):
                try:
                    api_key, current = self._keys.open(task_id, stored)
                except JournalKeyError:
                    unreadable += 1
                    continue
            else:
                api_key = stored
            if not current:
                changed.append((self._keys.seal(task_id, api_key), task_id))
                if not self._keys.keeps:
                    self._carried[task_id] = api_key
        if unreadable:
            given = "the journal key given does not open them" if self._keys.keeps else "no journal key was given"
            raise JournalKeyError(
                f"the journal {self.path} holds {unreadable} users' API keys sealed with a journal key, and {given}: "
                "give the key they were sealed with (while rotating, as the previous key next to the new one)"
            )
        if changed:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE tasks SET api_key=? WHERE task_id=?", changed)
            self._db.execute("COMMIT")

    def _scrub(self) -> None:
        """Rewrite a journal written before secure_delete once: its free pages may still hold keys."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCRUBBED_VERSION:
            self._db.execute("VACUUM")
            self._db.execute(f"PRAGMA user_version={SCRUBBED_VERSION}")

    def accepted(self, task: Task) -> None:
        """A new task, before its user hears it was accepted (its user's key sealed, or not written)."""
        api_key = self._keys.seal(task.task_id, task.api_key) if task.api_key else None
        if api_key == NOT_KEPT:
            self._carried[task.task_id] = task.api_key
        self._write(
            "INSERT INTO tasks (task_id, session_id, query, api_key, model, submitted_ms, state) "
            "VALUES (?, ?, ?, ?, ?, ?, 'queued')",
            (task.task_id, task.session_id, task.query, api_key, task.model, task.submitted_ms),
        )

    def assigned(self, task: Task) -> None:
        """A task's current attempt went to a worker."""
        self._write(
            "UPDATE tasks SET state='assigned', attempt=?, token=?, worker_id=?, assigned_ms=? WHERE task_id=?",
            (task.attempt, task.token, task.worker_id, task.assigned_ms, task.task_id),
        )

    def requeued(self, task: Task) -> None:
        """A task went back to the queue (its attempt was lost)."""
        self._write("UPDATE tasks SET state='queued', token=NULL, worker_id=NULL WHERE task_id=?", (task.task_id,))

    def finished(self, task: Task, payload: AiResponse, failed: bool, now_ms: int) -> None:
        """A task has its answer (or failed for good); the key and token are no longer needed."""
        self._write(
            "UPDATE tasks SET state=?, answer=?, finished_ms=?, api_key=NULL, token=NULL WHERE task_id=?",
            ("failed" if failed else "answered", payload.model_dump_json(), now_ms, task.task_id),
        )
        if self._carried:
            self._carried.pop(task.task_id, None)

    def delivered(self, task_id: str, now_ms: int) -> None:
        """The user has the answer: the task leaves the journal."""
        self._write("DELETE FROM tasks WHERE task_id=?", (task_id,))

    def open_tasks(self) -> list[Task]:
        """Tasks that were queued or assigned, to restore after a restart."""
        rows = self._db.execute(
            "SELECT task_id, session_id, query, api_key, model, submitted_ms, state, attempt, token, worker_id, "
            "assigned_ms FROM tasks WHERE state IN ('queued', 'assigned') ORDER BY submitted_ms"
        ).fetchall()
        records = (
            TaskRecord(
                task_id=r[0],
                session_id=r[1],
                query=r[2],
                api_key=r[3],
                model=r[4],
                submitted_ms=r[5],
                state=r[6],
                attempt=r[7],
                token=r[8],
                worker_id=r[9],
                assigned_ms=r[10],
            )
            for r in rows
        )
        return [t.to_task(self._reveal(t.task_id, t.api_key)) for t in records]

    def keys_not_kept(self) -> set[str]:
        """The open tasks whose user gave a key that this journal does not have: it was kept in memory only, by
        a previous run (read at restore)."""
        rows = self._db.execute(
            "SELECT task_id FROM tasks WHERE api_key=? AND state IN ('queued', 'assigned')", (NOT_KEPT,)
        ).fetchall()
        return {r[0] for r in rows if r[0] not in self._carried}

    def _reveal(self, task_id: str, stored: str | None) -> str:
        """The user's key of a task from its api_key column ("" when there is none, or it was not kept)."""
        return reveal_key(self._keys, self._carried, task_id, stored)

    def pending_answers(self) -> list[PendingAnswer]:
        """Answers that were not delivered yet, oldest first."""
        rows = self._db.execute(
            "SELECT task_id, session_id, answer, finished_ms FROM tasks "
            "WHERE state IN ('answered', 'failed') ORDER BY finished_ms"
        ).fetchall()
        return [PendingAnswer(r[0], r[1], AiResponse.model_validate_json(r[2]), r[3]) for r in rows]

    def purge(self, older_than_ms: int) -> int:
        """Drop undelivered answers finished before `older_than_ms`; returns how many."""
        cursor = self._write(
            "DELETE FROM tasks WHERE state IN ('answered', 'failed') AND finished_ms < ?", (older_than_ms,)
        )
        return cursor.rowcount

    def worker_known(self, worker_id: str, language: str, client_id: str | None) -> None:
        """A baseline worker is online (on `client_id`, when known)."""
        self._write(
            "INSERT INTO workers (worker_id, language, client_id) VALUES (?, ?, ?) ON CONFLICT(worker_id) "
            "DO UPDATE SET language=excluded.language, client_id=coalesce(excluded.client_id, client_id)",
            (worker_id, language, client_id),
        )

    def worker_longest(self, worker_id: str, longest_task_ms: int) -> None:
        """A baseline worker's longest task so far."""
        self._write("UPDATE workers SET longest_task_ms=? WHERE worker_id=?", (longest_task_ms, worker_id))

    def worker_gone(self, worker_id: str) -> None:
        """A baseline worker went offline or was forgotten."""
        self._write("DELETE FROM workers WHERE worker_id=?", (worker_id,))

    def known_workers(self) -> list[KnownWorker]:
        """The baseline workers online when last heard of, to remember after a restart."""
        rows = self._db.execute("SELECT worker_id, language, client_id, longest_task_ms FROM workers").fetchall()
        return [KnownWorker(*r) for r in rows]
