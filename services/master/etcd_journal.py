"""The task journal in etcd: the same records and the same interface as the SQLite journal (journal.py), for
masters that fail over (issue 20).

Each task is one JSON record at `<prefix>/tasks/<task_id>`, each baseline worker one at `<prefix>/workers/<id>`;
users' API keys in them are sealed with the journal key as in SQLite (`KeySealer`), or not written. The journal
keeps a copy of its records in memory, so that what the master calls on its hot path stays synchronous, as with
SQLite: a write updates the copy and stages the record's new value (or its deletion), and the reads
(`open_tasks`, `pending_answers`, ...) read the copy. Only the commit task talks to etcd.

Group commit, with a floor: the writes staged since the last commit go in one etcd transaction (the last write
of a key wins), sent at the start of the next turn of the loop, but no sooner than `commit_floor` (5 ms) after
the previous one began, and one at a time; etcd's cost follows the number of commits, not of writes (issue 20's
findings: ~2.2 ms of CPU per transaction and ~50 us per op). A batch larger than etcd takes in one transaction
(128 ops, 1.5 MiB by default) is sent as several, in order; each carries the leader's fence, so that a master
that lost the leadership can never write. Records are whole values, so a batch applied in part, or again, leaves
each record as one of its writes left it.

`durable()` returns once the transaction(s) holding the caller's writes are applied. A transaction whose reply was
lost (a timeout, a member that died) is sent again, up to COMMIT_ATTEMPTS times, the client moving to another
member: its writes are whole records under the leader's fence, so applying it twice leaves what applying it once
does. `durable()` raises `JournalError` when they were not applied, or their outcome is still unknown, and from the
first refused fence on, always: the master is no longer the leader and must promise nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Sequence

from services.master.dispatch import Task
from services.master.etcd.client import EtcdClient
from services.master.etcd.errors import EtcdCompacted, EtcdError, EtcdTimeout, EtcdUnavailable
from services.master.etcd.ops import Compare, Delete, Put, delete, put
from services.master.journal_records import (
    FINISHED_STATES,
    NOT_KEPT,
    OPEN_STATES,
    SEALED,
    JournalError,
    JournalKeyError,
    KeySealer,
    KnownWorker,
    PendingAnswer,
    TaskRecord,
    reveal_key,
)
from services.protocol import AiResponse

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/swarm-ai-lab/journal"
COMMIT_FLOOR_S = 0.005
# Tries of a transaction whose outcome is unknown (a timeout, a member gone) before it counts as failed.
COMMIT_ATTEMPTS = 3
# Bytes of keys and values per transaction, under etcd's --max-request-bytes (1.5 MiB) with room for framing.
MAX_TXN_BYTES = 1 << 20
OP_OVERHEAD_BYTES = 16
NO_LONGER_LEADER = "no longer the leader: etcd refused the journal's fenced write"

Fence = Compare | Callable[[], Compare]
Write = Put | Delete


class EtcdJournal:
    """Records each task's life in etcd, so that a new leader loses nothing the old one promised.

    Make it with `await EtcdJournal.open(...)` inside the event loop: it reads the prefix back and starts the
    commit task. `close()` is a coroutine (it waits for the last commit); the rest is as `Journal`.
    """

    def __init__(
        self,
        client: EtcdClient,
        fence: Fence,
        keys: KeySealer,
        prefix: str = DEFAULT_PREFIX,
        *,
        commit_floor: float = COMMIT_FLOOR_S,
        max_ops: int | None = None,
        max_bytes: int = MAX_TXN_BYTES,
        attempts: int = COMMIT_ATTEMPTS,
    ) -> None:
        """No I/O here: `open` reads the prefix and starts committing."""
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.commit_floor = commit_floor
        self.max_ops = max_ops or client.max_txn_ops
        self.max_bytes = max_bytes
        self.attempts = max(1, attempts)
        self._fence = fence
        self._keys = keys
        self._tasks: dict[str, TaskRecord] = {}
        self._workers: dict[str, KnownWorker] = {}
        # Without a current journal key, the users' keys of open tasks in memory only (see Journal).
        self._carried: dict[str, str] = {}
        self._pending: dict[bytes, Write] = {}  # staged since the last commit began: key -> its last write
        self._pending_done: asyncio.Future[None] | None = None  # set when the pending writes are applied
        self._inflight_done: asyncio.Future[None] | None = None  # the same for the batch being sent
        self._wake = asyncio.Event()
        self._now = False  # `commit()` asked: skip the floor once
        self._last_error: JournalError | None = None  # the last commit's, until one succeeds
        self.deposed: str | None = None  # why, once a fence was refused: from then on nothing is durable
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # batches applied
        self.transactions = 0  # etcd transactions applied (a batch over the limits is several)

    @classmethod
    async def open(
        cls,
        client: EtcdClient,
        fence: Fence,
        keys: KeySealer,
        prefix: str = DEFAULT_PREFIX,
        *,
        commit_floor: float = COMMIT_FLOOR_S,
        max_ops: int | None = None,
        max_bytes: int = MAX_TXN_BYTES,
    ) -> EtcdJournal:
        """The journal under `prefix`, with what etcd holds there read back (keys sealed with a previous journal
        key are sealed again, in the first commit); JournalKeyError when it holds keys `keys` cannot open."""
        journal = cls(client, fence, keys, prefix, commit_floor=commit_floor, max_ops=max_ops, max_bytes=max_bytes)
        await journal._load()
        journal._reseal()  # before the commit task starts: a JournalKeyError leaves nothing running
        journal._committer = asyncio.create_task(journal._run(), name=f"etcd-journal {journal.prefix}")
        return journal

    # -- keys -----------------------------------------------------------------------------------------------------

    def _task_key(self, task_id: str) -> bytes:
        return f"{self.prefix}/tasks/{task_id}".encode()

    def _worker_key(self, worker_id: str) -> bytes:
        return f"{self.prefix}/workers/{worker_id}".encode()

    # -- restore --------------------------------------------------------------------------------------------------

    async def _load(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                snapshot = await self.client.get_prefix_paged(self.prefix + "/")
                break
            except EtcdCompacted:  # compacted between two pages: read it all again
                if attempt + 1 == attempts:
                    raise
        tasks_at, workers_at = f"{self.prefix}/tasks/".encode(), f"{self.prefix}/workers/".encode()
        for kv in snapshot.kvs:
            fields = json.loads(kv.value)
            if kv.key.startswith(tasks_at):
                record = TaskRecord(
                    **{f.name: fields[f.name] for f in dataclasses.fields(TaskRecord) if f.name in fields}
                )
                self._tasks[record.task_id] = record
            elif kv.key.startswith(workers_at):
                worker = KnownWorker(**{f.name: fields[f.name] for f in dataclasses.fields(KnownWorker)})
                self._workers[worker.worker_id] = worker

    def _reseal(self) -> None:
        """As the SQLite journal: keys sealed with a previous journal key (or in the clear) are sealed with the
        current one, or, without one, not kept; JournalKeyError when no key given opens some."""
        unreadable = 0
        for record in self._tasks.values():
            stored = record.api_key
            if stored is None or stored == NOT_KEPT:
                continue
            current = False
            if stored.startswith(SEALED):
                try:
                    api_key, current = self._keys.open(record.task_id, stored)
                except JournalKeyError:
                    unreadable += 1
                    continue
            else:
                api_key = stored
            if not current:
                record.api_key = self._keys.seal(record.task_id, api_key)
                if not self._keys.keeps:
                    self._carried[record.task_id] = api_key
                self._stage_task(record)
        if unreadable:
            self._pending.clear()
            given = "the journal key given does not open them" if self._keys.keeps else "no journal key was given"
            raise JournalKeyError(
                f"the journal in etcd at {self.prefix} holds {unreadable} users' API keys sealed with a journal key, "
                f"and {given}: give the key they were sealed with (while rotating, as the previous key next to the "
                "new one)"
            )

    def open_tasks(self) -> list[Task]:
        """Tasks that were queued or assigned, to restore after a failover or restart."""
        records = sorted((r for r in self._tasks.values() if r.state in OPEN_STATES), key=lambda r: r.submitted_ms)
        return [r.to_task(reveal_key(self._keys, self._carried, r.task_id, r.api_key)) for r in records]

    def keys_not_kept(self) -> set[str]:
        """The open tasks whose user gave a key that this journal does not have (kept in memory by a previous
        leader only)."""
        return {
            r.task_id
            for r in self._tasks.values()
            if r.state in OPEN_STATES and r.api_key == NOT_KEPT and r.task_id not in self._carried
        }

    def pending_answers(self) -> list[PendingAnswer]:
        """Answers that were not delivered yet, oldest first."""
        finished = (r for r in self._tasks.values() if r.state in FINISHED_STATES)
        return [r.to_pending() for r in sorted(finished, key=lambda r: r.finished_ms or 0)]

    def known_workers(self) -> list[KnownWorker]:
        """The baseline workers online when last heard of."""
        return list(self._workers.values())

    # -- writes (synchronous: staged for the next commit) ---------------------------------------------------------

    def _stage(self, key: bytes, write: Write) -> None:
        if self._pending_done is None:
            self._pending_done = asyncio.get_running_loop().create_future()
            self._pending_done.add_done_callback(_retrieve)
        self._pending[key] = write
        self._wake.set()  # the commit task runs at the next turn, after this turn's handlers have written

    def _stage_task(self, record: TaskRecord) -> None:
        value = json.dumps(dataclasses.asdict(record), separators=(",", ":"))
        key = self._task_key(record.task_id)
        self._stage(key, put(key, value))

    def _stage_worker(self, worker: KnownWorker) -> None:
        value = json.dumps(dataclasses.asdict(worker), separators=(",", ":"))
        key = self._worker_key(worker.worker_id)
        self._stage(key, put(key, value))

    def accepted(self, task: Task) -> None:
        """A new task, before its user hears it was accepted (its user's key sealed, or not written)."""
        api_key = self._keys.seal(task.task_id, task.api_key) if task.api_key else None
        if api_key == NOT_KEPT:
            self._carried[task.task_id] = task.api_key
        record = TaskRecord(task.task_id, task.session_id, task.query, api_key, task.model, task.submitted_ms)
        self._tasks[task.task_id] = record
        self._stage_task(record)

    def assigned(self, task: Task) -> None:
        """A task's current attempt went to a worker."""
        record = self._tasks.get(task.task_id)
        if record is None:
            return
        record.state, record.attempt, record.token = "assigned", task.attempt, task.token
        record.worker_id, record.assigned_ms = task.worker_id, task.assigned_ms
        self._stage_task(record)

    def requeued(self, task: Task) -> None:
        """A task went back to the queue (its attempt was lost)."""
        record = self._tasks.get(task.task_id)
        if record is None:
            return
        record.state, record.token, record.worker_id = "queued", None, None
        self._stage_task(record)

    def finished(self, task: Task, payload: AiResponse, failed: bool, now_ms: int) -> None:
        """A task has its answer (or failed for good); the key and token are no longer needed."""
        record = self._tasks.get(task.task_id)
        if record is None:
            return
        record.state = "failed" if failed else "answered"
        record.answer, record.finished_ms = payload.model_dump_json(), now_ms
        record.api_key = record.token = None
        self._carried.pop(task.task_id, None)
        self._stage_task(record)

    def delivered(self, task_id: str, now_ms: int) -> None:
        """The user has the answer: the task leaves the journal."""
        self._tasks.pop(task_id, None)
        key = self._task_key(task_id)
        self._stage(key, delete(key))

    def purge(self, older_than_ms: int) -> int:
        """Drop undelivered answers finished before `older_than_ms`; returns how many."""
        old = [
            r.task_id
            for r in self._tasks.values()
            if r.state in FINISHED_STATES and (r.finished_ms or 0) < older_than_ms
        ]
        for task_id in old:
            self.delivered(task_id, older_than_ms)
        return len(old)

    def worker_known(self, worker_id: str, language: str, client_id: str | None) -> None:
        """A baseline worker is online (on `client_id`, when known)."""
        before = self._workers.get(worker_id)
        if client_id is None and before is not None:
            client_id = before.client_id
        worker = KnownWorker(worker_id, language, client_id, before.longest_task_ms if before else 0)
        self._workers[worker_id] = worker
        self._stage_worker(worker)

    def worker_longest(self, worker_id: str, longest_task_ms: int) -> None:
        """A baseline worker's longest task so far."""
        before = self._workers.get(worker_id)
        if before is None:
            return
        worker = dataclasses.replace(before, longest_task_ms=longest_task_ms)
        self._workers[worker_id] = worker
        self._stage_worker(worker)

    def worker_gone(self, worker_id: str) -> None:
        """A baseline worker went offline or was forgotten."""
        self._workers.pop(worker_id, None)
        key = self._worker_key(worker_id)
        self._stage(key, delete(key))

    # -- commits --------------------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Send what is staged without waiting for the floor (no I/O here: await `durable()` to know it landed)."""
        if self._pending:
            self._now = True
            self._wake.set()

    async def durable(self) -> None:
        """Return once every write made so far is applied in etcd (at once when nothing is pending); JournalError
        when it was not, or may not have been, and always once this master was deposed."""
        if self.deposed is not None:
            raise JournalError(self.deposed)
        if self._committer is None or self._committer.done():
            raise JournalError("the journal is closed: nothing more is committed")
        future = self._pending_done if self._pending else self._inflight_done
        if future is None:
            if self._last_error is not None:  # writes of this caller may have been in the batch that failed
                raise self._last_error
            return
        await asyncio.shield(future)

    def checkpoint(self) -> bool:
        """Nothing to do in etcd (its history is compacted by its own --auto-compaction): False."""
        return False

    async def close(self) -> None:
        """Commit what is staged, wait for it, and stop the commit task; JournalError if that last commit failed."""
        try:
            self.commit()
            await self.durable()
        finally:
            if self._committer is not None:
                self._committer.cancel()
                await asyncio.gather(self._committer, return_exceptions=True)
                self._committer = None
            for future in (self._pending_done, self._inflight_done):
                if future is not None and not future.done():
                    future.set_exception(JournalError("the journal was closed before this write was committed"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            wait = last + self.commit_floor - loop.time()
            if wait > 0 and not self._now:
                await asyncio.sleep(wait)  # what arrives meanwhile joins this batch
            self._now = False
            batch, done = self._pending, self._pending_done
            self._pending, self._pending_done = {}, None
            assert done is not None
            self._inflight_done = done
            last = loop.time()
            try:
                await self._send(list(batch.values()))
            except Exception as error:  # a JournalError, or a bug: no caller of `durable` may wait forever
                if not isinstance(error, JournalError):
                    error = JournalError(f"the journal's commit failed: {error!r}")
                self._last_error = error
                log.error("journal commit to etcd failed (%d writes): %s", len(batch), error)
                done.set_exception(error)
            else:
                self._last_error = None
                self.commits += 1
                done.set_result(None)
            finally:
                self._inflight_done = None

    async def _send(self, writes: Sequence[Write]) -> None:
        if self.deposed is not None:
            raise JournalError(self.deposed)
        try:
            fence = self._fence() if callable(self._fence) else self._fence
        except EtcdError as error:  # NotLeader: no epoch (any more)
            self.deposed = f"{NO_LONGER_LEADER} ({error})"
            raise JournalError(self.deposed) from error
        for chunk in self._chunks(writes):
            for attempt in range(1, self.attempts + 1):
                try:
                    result = await self.client.txn([fence], chunk)
                    break
                except (EtcdTimeout, EtcdUnavailable) as error:
                    # Sent again (the client moved to another member): whole records under the same fence, so
                    # a transaction applied twice leaves what it leaves once, and one applied late is refused.
                    if attempt == self.attempts:
                        raise JournalError(f"the journal's commit to etcd has an unknown outcome: {error}") from error
                    log.warning("journal commit to etcd: %s; sending it again (%d/%d)", error, attempt, self.attempts)
                except EtcdError as error:
                    raise JournalError(f"the journal could not commit to etcd: {error}") from error
            if not result.succeeded:
                self.deposed = NO_LONGER_LEADER
                raise JournalError(self.deposed)
            self.transactions += 1

    def _chunks(self, writes: Sequence[Write]) -> Iterator[list[Write]]:
        """The writes in transactions of at most `max_ops` ops and `max_bytes` (a larger write goes alone)."""
        chunk: list[Write] = []
        size = 0
        for write in writes:
            cost = len(write.key) + (len(write.value) if isinstance(write, Put) else 0) + OP_OVERHEAD_BYTES
            if chunk and (len(chunk) == self.max_ops or size + cost > self.max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(write)
            size += cost
        if chunk:
            yield chunk


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a batch's failure as seen: nobody may have awaited it (no caller wanted it durable)."""
    if not future.cancelled():
        future.exception()
