"""The worker registry: who is online, who is idle, and in which order they became idle."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from services.protocol import worker_language


class WorkerState(str, Enum):
    """What the master believes a worker is doing."""

    IDLE = "idle"
    BUSY = "busy"
    OFFLINE = "offline"
    LOST = "lost"  # its lease ran out (hung, or slower than it said): no tasks until it reports again


@dataclass
class Worker:
    """One worker as the master sees it."""

    worker_id: str
    language: str
    state: WorkerState
    registered_ms: int
    last_seen_ms: int
    task_id: str | None = None  # the task the master gave it and has not got back yet
    tasks_done: int = 0
    tasks_failed: int = 0
    max_task_ms: int | None = None  # the longest a task may take on it (work + model timeout), if it said
    gone_since_ms: int = 0  # when it went offline or lost (meaningful in those states only)
    confirmed: bool = False  # it reported busy since it was given its current task
    heard: bool = True  # False for a worker remembered from before a restart, until it reports
    longest_task_ms: int = 0  # the longest a task of it took, assignment to accepted result
    task_messages: bool = True  # it reports busy and idle around each task (False: it said it leaves them out)
    retired: bool = False  # given no more tasks (the autoscaler stops it), until it goes offline or registers again

    @property
    def baseline(self) -> bool:
        """True for a worker that stated no bound on its tasks (the original system's workers state none):
        its leases come from what the master has observed, and it has no Last Will."""
        return self.max_task_ms is None


def language_of(worker_id: str) -> str:
    """The language named by a baseline worker id (`<language>-worker-<random>`), or `unknown`."""
    return worker_language(worker_id) or "unknown"


class Registry:
    """Workers by id, plus the idle ones ordered by how long they have been idle (oldest first)."""

    def __init__(self) -> None:
        self._workers: dict[str, Worker] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()
        # Kept as states change: every watched event reports them, and walking hundreds of workers per
        # event cost the master 40 % more CPU per task at 200 workers (`lab bench scale --watch`).
        self._counts = dict.fromkeys(WorkerState, 0)

    def __len__(self) -> int:
        return len(self._workers)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers.values())

    def get(self, worker_id: str) -> Worker | None:
        """The worker with this id, if ever seen."""
        return self._workers.get(worker_id)

    def upsert(self, worker_id: str, language: str, now_ms: int) -> Worker:
        """Record a worker that says it is online; a new one starts busy until marked idle. One that registers
        again is no longer retired."""
        worker = self._workers.get(worker_id)
        if worker is None:
            worker = Worker(worker_id, language, WorkerState.BUSY, now_ms, now_ms)
            self._workers[worker_id] = worker
            self._counts[WorkerState.BUSY] += 1
        elif worker.retired:
            worker.retired = False
            if worker.state is WorkerState.IDLE:
                self._idle[worker_id] = None  # assignable again, after those idle before it came back
        worker.language = language or worker.language
        worker.last_seen_ms = now_ms
        return worker

    def mark_idle(self, worker: Worker, now_ms: int) -> None:
        """Make a worker assignable, at the back of the idle order (it was idle for the shortest time)."""
        self._move(worker, WorkerState.IDLE)
        worker.task_id = None
        worker.last_seen_ms = now_ms
        if worker.retired:
            return  # idle, and never chosen
        self._idle[worker.worker_id] = None
        self._idle.move_to_end(worker.worker_id)

    def mark_busy(self, worker: Worker, task_id: str | None, now_ms: int) -> None:
        """Take a worker out of the idle order, holding `task_id` (None: work the master did not give)."""
        self._move(worker, WorkerState.BUSY)
        worker.task_id = task_id
        worker.last_seen_ms = now_ms
        self._idle.pop(worker.worker_id, None)

    def mark_offline(self, worker: Worker, now_ms: int) -> None:
        """Take a worker out of service; its task (if any) is the caller's to requeue. It is no longer retired."""
        self._move(worker, WorkerState.OFFLINE)
        worker.task_id = None
        worker.retired = False
        worker.last_seen_ms = worker.gone_since_ms = now_ms
        self._idle.pop(worker.worker_id, None)

    def mark_lost(self, worker: Worker, now_ms: int) -> None:
        """Take a worker that stopped answering out of service until it reports again; its task (if any) is
        the caller's to requeue. `last_seen_ms` stays when it was last heard from."""
        self._move(worker, WorkerState.LOST)
        worker.task_id = None
        worker.gone_since_ms = now_ms
        self._idle.pop(worker.worker_id, None)

    def forget_gone(self, before_ms: int) -> list[Worker]:
        """Drop the workers that went offline or lost before `before_ms`, and return them. One that reports
        again later is admitted again as a new worker."""
        gone = [
            w
            for w in self._workers.values()
            if w.state in (WorkerState.OFFLINE, WorkerState.LOST) and w.gone_since_ms < before_ms
        ]
        for worker in gone:
            del self._workers[worker.worker_id]
            self._counts[worker.state] -= 1
        return gone

    def retire(self, worker_id: str) -> Worker | None:
        """Give a worker no more tasks: out of the idle order, now and whenever it becomes idle, until it goes
        offline or registers again. It keeps its state and its task, if it has one. None: no such worker."""
        worker = self._workers.get(worker_id)
        if worker is not None:
            worker.retired = True
            self._idle.pop(worker_id, None)
        return worker

    def take_longest_idle(self) -> Worker | None:
        """The worker idle for the longest time, or None when nobody is idle (not yet marked busy)."""
        for worker_id in self._idle:
            return self._workers[worker_id]
        return None

    def count(self, state: WorkerState) -> int:
        """How many workers are in `state`."""
        return self._counts[state]

    def _move(self, worker: Worker, state: WorkerState) -> None:
        self._counts[worker.state] -= 1
        self._counts[state] += 1
        worker.state = state
