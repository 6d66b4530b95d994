"""Pure dispatch decisions: the task queue, assignment to the longest-idle worker, result checks.

No I/O here: every method takes the current time and returns what the edges must do.
"""

from __future__ import annotations

import hmac
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from services.master.registry import Registry, Worker, WorkerState, language_of


class TaskState(str, Enum):
    """Where a task is in its life."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    ANSWERED = "answered"
    FAILED = "failed"


@dataclass
class Task:
    """One user question, from acceptance until its answer (or failure) is known."""

    task_id: str
    session_id: str
    query: str
    submitted_ms: int
    api_key: str = field(default="", repr=False)  # kept in memory only, never logged
    model: str | None = None
    attempt: int = 0
    token: str = field(default="", repr=False)
    worker_id: str | None = None
    assigned_ms: int = 0
    lease_until_ms: int = 0
    state: TaskState = TaskState.QUEUED


@dataclass(frozen=True)
class Assignment:
    """Send `task` (its current attempt and token) to `worker_id`."""

    task: Task
    worker_id: str


@dataclass(frozen=True)
class Failure:
    """`task` failed for good (too many attempts); tell its user `message`."""

    task: Task
    message: str


@dataclass(frozen=True)
class Requeue:
    """`task` went back to the front of the queue because its attempt on `worker_id` was lost."""

    task: Task
    worker_id: str
    reason: str


@dataclass(frozen=True)
class ResultClaim:
    """What a worker's result says about which task it answers (the rest is payload)."""

    worker_id: str
    task_id: str
    attempt: int
    token: str


@dataclass
class Outcome:
    """What the edges must do after an event: assignments to publish and failures to deliver."""

    assignments: list[Assignment] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    requeued: list[Requeue] = field(default_factory=list)

    def extend(self, other: Outcome) -> Outcome:
        """Add what `other` says to do after what this one says; returns self."""
        self.assignments.extend(other.assignments)
        self.failures.extend(other.failures)
        self.requeued.extend(other.requeued)
        return self


@dataclass(frozen=True)
class Verdict:
    """Whether a result is accepted; on acceptance `task` is the finished task."""

    accepted: bool
    message: str
    task: Task | None = None
    outcome: Outcome = field(default_factory=Outcome)


class Dispatcher:
    """The queue, the in-flight tasks and the registry, changed only through these methods."""

    def __init__(  # noqa: PLR0913 (keyword-only: one per timing and limit of the dispatcher)
        self,
        *,
        max_attempts: int = 3,
        allow_baseline: bool = False,
        lease_ms: int = 60_000,
        lease_margin_ms: int = 15_000,
        restore_grace_ms: int = 15_000,
        confirm_ms: int = 5_000,
        busy_after_register_ms: int = 3_000,
        forget_gone_after_ms: int = 30_000,
        new_token: Callable[[], str] = lambda: secrets.token_urlsafe(24),
    ) -> None:
        self.registry = Registry()
        self.max_attempts = max_attempts
        self.allow_baseline = allow_baseline
        self.lease_ms = lease_ms
        self.lease_margin_ms = lease_margin_ms
        self.restore_grace_ms = restore_grace_ms
        self.confirm_ms = confirm_ms
        self.busy_after_register_ms = busy_after_register_ms
        self.forget_gone_after_ms = forget_gone_after_ms
        self._new_token = new_token
        self._queue: deque[Task] = deque()
        self._tasks: dict[str, Task] = {}  # queued and assigned
        self._assigned: dict[str, Task] = {}
        self._by_session: Counter[str] = Counter()  # unfinished tasks per session
        self._held = False
        self._longest_baseline_ms = 0  # the longest task of any baseline worker so far
        # Workers of ours that registered while we hold a task of theirs: worker id -> (that task, until when its
        # `busy` may come). One that is on it says so right after registering; one that does not is free.
        self._awaiting_busy: dict[str, tuple[str, int]] = {}

    # -- reading ---------------------------------------------------------------------------
    @property
    def queue_length(self) -> int:
        """Tasks waiting for a worker."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Tasks given to a worker and not answered yet."""
        return len(self._assigned)

    @property
    def held(self) -> bool:
        """True while assignments are held back (the master cannot reach the workers)."""
        return self._held

    def unfinished(self, session_id: str) -> int:
        """How many of a session's tasks are queued or assigned."""
        return self._by_session[session_id]

    def open_tasks(self) -> Iterator[Task]:
        """Every queued or assigned task."""
        return iter(list(self._tasks.values()))

    def task(self, task_id: str) -> Task | None:
        """A task that is queued or assigned."""
        return self._tasks.get(task_id)

    def queued(self) -> Iterator[tuple[int, Task]]:
        """Queued tasks with their 1-based position."""
        return enumerate(self._queue, start=1)

    # -- events ----------------------------------------------------------------------------
    def submit(self, task: Task, now_ms: int) -> tuple[int, Outcome]:
        """Accept a new task; returns its queue position (0: assigned at once) and what to do."""
        if task.task_id in self._tasks:
            raise ValueError(f"duplicate task id {task.task_id}")
        self._tasks[task.task_id] = task
        self._by_session[task.session_id] += 1
        self._queue.append(task)
        outcome = self._dispatch(now_ms)
        if task.state is TaskState.ASSIGNED:
            return 0, outcome
        return len(self._queue), outcome

    def worker_online(
        self, worker_id: str, language: str, now_ms: int, max_task_ms: int | None = None, task_messages: bool = True
    ) -> Outcome:
        """A worker registered (or re-registered after a reconnect); `max_task_ms` sizes its leases;
        `task_messages` False: it reports no busy and idle around its tasks."""
        worker = self.registry.upsert(worker_id, language, now_ms)
        worker.max_task_ms = max_task_ms or worker.max_task_ms
        worker.task_messages = task_messages
        worker.heard = True
        held = self._assigned.get(worker.task_id) if worker.task_id else None
        if held is not None and worker.max_task_ms:
            # Ours say `busy` naming the task right after registering mid-task: without it, the worker is free
            # (the assignment died with a master before us), and the task goes back within seconds, not a lease.
            self._awaiting_busy[worker_id] = (held.task_id, now_ms + self.busy_after_register_ms)
        elif held is not None:
            # Alive and still on it (a restored task's short lease assumed otherwise): the normal lease.
            held.lease_until_ms = max(held.lease_until_ms, held.assigned_ms + self._lease_for(worker))
        if worker.task_id is None and worker.state is not WorkerState.IDLE:
            self.registry.mark_idle(worker, now_ms)
        return self._dispatch(now_ms)

    def worker_status(
        self, worker_id: str, status: str, now_ms: int, task_id: str | None = None, attempt: int | None = None
    ) -> Outcome:
        """A worker reported idle, busy or (by Last Will) offline; `task_id` and `attempt` name the task
        attempt it started (busy) or last finished (idle)."""
        worker = self.registry.get(worker_id)
        if status == WorkerState.OFFLINE.value:
            return self._worker_lost(worker, now_ms) if worker else Outcome()
        if worker is None or worker.state is WorkerState.OFFLINE:
            # A worker we do not know (we restarted, or forgot it while it was gone): it is online, admit it.
            worker = self.registry.upsert(worker_id, worker.language if worker else language_of(worker_id), now_ms)
        worker.last_seen_ms = now_ms
        worker.heard = True
        if worker.task_id is not None:
            held = self._assigned.get(worker.task_id)
            if held is None:
                return Outcome()
            if status == WorkerState.IDLE.value and self._finished_unanswered(worker, held, task_id, attempt):
                # It finished the very attempt we wait for, yet no result reached us (or we could not take
                # it): the result is lost, and the worker is free.
                outcome = self._lose(worker, "its result never arrived", now_ms)
                self.registry.mark_idle(worker, now_ms)
                return outcome.extend(self._dispatch(now_ms))
            if status == WorkerState.BUSY.value and task_id in (None, held.task_id):
                # It is on it: the whole lease, no longer the short one of a worker not heard from.
                self._awaiting_busy.pop(worker_id, None)
                worker.confirmed = True
                held.lease_until_ms = max(held.lease_until_ms, held.assigned_ms + self._lease_for(worker))
            # Otherwise the report is stale (an idle sent after the previous result crosses our
            # next assignment): the assignment stands.
            return Outcome()
        if status == WorkerState.IDLE.value:
            if worker.state is not WorkerState.IDLE:
                self.registry.mark_idle(worker, now_ms)
            return self._dispatch(now_ms)
        self.registry.mark_busy(worker, None, now_ms)
        return Outcome()

    def result(self, claim: ResultClaim, now_ms: int) -> Verdict:
        """Check a worker's result against the task's current attempt; accept or refuse it."""
        if not claim.task_id:
            if not self.allow_baseline:
                return Verdict(
                    False,
                    "refused: results must carry task_id and token (baseline workers need ALLOW_BASELINE_WORKERS=true)",
                )
            worker = self.registry.get(claim.worker_id)
            task = self._tasks.get(worker.task_id) if worker and worker.task_id else None
            if task is None:
                return Verdict(False, f"refused: worker {claim.worker_id} holds no task")
        else:
            task = self._tasks.get(claim.task_id)
            if task is None:
                return Verdict(False, "refused: unknown task (or already finished)")
            if task.state is not TaskState.ASSIGNED or claim.attempt != task.attempt:
                return Verdict(False, f"refused: attempt {claim.attempt} is not the current attempt")
            if not hmac.compare_digest(claim.token.encode(), task.token.encode()):
                return Verdict(False, "refused: invalid token")
            if claim.worker_id != task.worker_id:
                return Verdict(False, "refused: task is assigned to another worker")
        self._forget(task)
        worker = self.registry.get(task.worker_id or "")
        if worker is not None and worker.task_id == task.task_id:
            worker.tasks_done += 1
            if worker.baseline:
                took = max(0, now_ms - task.assigned_ms)
                worker.longest_task_ms = max(worker.longest_task_ms, took)
                self._longest_baseline_ms = max(self._longest_baseline_ms, took)
            self.registry.mark_idle(worker, now_ms)
        return Verdict(True, "accepted", task, self._dispatch(now_ms))

    def finish(self, task: Task, failed: bool) -> None:
        """Record how an accepted task ended (counts on its worker)."""
        task.state = TaskState.FAILED if failed else TaskState.ANSWERED
        worker = self.registry.get(task.worker_id or "")
        if failed and worker is not None:
            worker.tasks_failed += 1

    def hold(self, held: bool, now_ms: int) -> Outcome:
        """Hold assignments back (True) while workers cannot be reached, or resume them (False)."""
        self._held = held
        return Outcome() if held else self._dispatch(now_ms)

    def expire(self, now_ms: int) -> Outcome:
        """Take back every task whose lease ran out; its worker is lost (given nothing) until it reports."""
        outcome = Outcome()
        for worker_id, (task_id, until_ms) in list(self._awaiting_busy.items()):
            if until_ms > now_ms:
                continue
            del self._awaiting_busy[worker_id]
            worker = self.registry.get(worker_id)
            if worker is not None and worker.task_id == task_id and task_id in self._assigned:
                outcome.extend(self._lose(worker, "it registered again and did not say it was on it", now_ms))
                self.registry.mark_idle(worker, now_ms)
        for task in [t for t in self._assigned.values() if t.lease_until_ms <= now_ms]:
            worker = self.registry.get(task.worker_id or "")
            if worker is None or worker.task_id != task.task_id:
                continue
            outcome.extend(self._lose(worker, "its lease ran out", now_ms))
            self.registry.mark_lost(worker, now_ms)  # hung or slow: wait until it reports idle again
        return outcome.extend(self._dispatch(now_ms))

    def forget_gone(self, now_ms: int) -> list[Worker]:
        """Drop workers offline or lost for longer than `forget_gone_after_ms`, so that the status and its
        counts show the fleet as it is; returns them."""
        return self.registry.forget_gone(now_ms - self.forget_gone_after_ms)

    def assignment_lost(self, task_id: str, attempt: int, now_ms: int) -> Outcome:
        """The task message of `attempt` could not be published: requeue the task and keep the worker.

        The attempt does not count (no worker had it; if it did after all, its token is now stale), and
        nothing is assigned here: while the broker is going away every publish fails, and an immediate
        retry would spin. The next event or lease check (within half a second) dispatches again."""
        task = self._assigned.get(task_id)
        worker = self.registry.get(task.worker_id or "") if task else None
        if task is None or task.attempt != attempt or worker is None or worker.task_id != task_id:
            return Outcome()
        outcome = self._lose(worker, "its task message could not be sent", now_ms, count=False)
        self.registry.mark_idle(worker, now_ms)
        return outcome

    def remember(self, worker_id: str, language: str, longest_task_ms: int, now_ms: int) -> Worker:
        """Take back a baseline worker known before a restart, as idle: it never registers again on its own
        (it does not read the master's presence). Until it is heard from, its tasks have a short lease
        (`confirm_ms`), in case it died while the master was away. Call before `restore`."""
        worker = self.registry.upsert(worker_id, language, now_ms)
        worker.heard = False
        worker.longest_task_ms = max(worker.longest_task_ms, longest_task_ms)
        self._longest_baseline_ms = max(self._longest_baseline_ms, longest_task_ms)
        self.registry.mark_idle(worker, now_ms)
        return worker

    def restore(self, tasks: list[Task], now_ms: int) -> None:
        """Take back the open tasks of a previous run: queued ones in order, assigned ones still
        assigned (their worker may yet deliver) under a short lease that becomes the normal one when
        the worker registers again (it does so as soon as it sees the restarted master). A remembered
        baseline worker never registers again: its task keeps the lease it was given."""
        for task in sorted(tasks, key=lambda t: t.submitted_ms):
            self._tasks[task.task_id] = task
            self._by_session[task.session_id] += 1
            if task.state is TaskState.ASSIGNED and task.worker_id:
                remembered = self.registry.get(task.worker_id)
                worker = self.registry.upsert(task.worker_id, language_of(task.worker_id), now_ms)
                self.registry.mark_busy(worker, task.task_id, now_ms)
                task.lease_until_ms = now_ms + self.restore_grace_ms
                if remembered is not None:
                    worker.confirmed = True  # it had the task before the restart: an idle means it is done
                    task.lease_until_ms = max(task.lease_until_ms, task.assigned_ms + self._lease_for(worker))
                self._assigned[task.task_id] = task
            else:
                task.state = TaskState.QUEUED
                self._queue.append(task)

    # -- internals -------------------------------------------------------------------------
    def _forget(self, task: Task) -> None:
        del self._tasks[task.task_id]
        self._assigned.pop(task.task_id, None)
        self._by_session[task.session_id] -= 1
        if self._by_session[task.session_id] <= 0:
            del self._by_session[task.session_id]

    def _worker_lost(self, worker: Worker, now_ms: int) -> Outcome:
        """A worker went offline: its task goes back to the front of the queue, or fails."""
        outcome = self._lose(worker, "its worker went offline", now_ms)
        self.registry.mark_offline(worker, now_ms)
        return outcome.extend(self._dispatch(now_ms))

    def _lose(self, worker: Worker, reason: str, now_ms: int, count: bool = True) -> Outcome:
        """The worker's current attempt is lost: requeue its task at the front, or fail it for good.
        With `count` False the attempt is taken back, as if it never happened."""
        task = self._assigned.get(worker.task_id) if worker.task_id else None
        worker.task_id = None
        outcome = Outcome()
        if task is None:
            return outcome
        self._assigned.pop(task.task_id, None)
        if not count:
            task.attempt -= 1
        if task.attempt >= self.max_attempts:
            self._forget(task)
            task.state = TaskState.FAILED
            outcome.failures.append(
                Failure(task, f"Sorry, this question failed: {task.attempt} attempts were lost ({reason}).")
            )
        else:
            task.state = TaskState.QUEUED
            task.worker_id = None
            task.token = ""
            self._queue.appendleft(task)
            outcome.requeued.append(Requeue(task, worker.worker_id, reason))
        return outcome

    @staticmethod
    def _finished_unanswered(worker: Worker, held: Task, task_id: str | None, attempt: int | None) -> bool:
        """Whether an idle report says that `worker` finished `held` without a result we took. Our workers
        name the attempt they finished (an idle after an older attempt is not about this one). A baseline
        worker names none: its idle counts once it reported busy on this task, as an idle sent after its
        previous result may cross this assignment."""
        if task_id is not None:
            return (task_id, attempt) == (held.task_id, held.attempt)
        return worker.baseline and worker.confirmed

    def _lease_for(self, worker: Worker) -> int:
        """How long a task may take on `worker`: what it said, else what its kind of worker has been seen to
        take (half as long again, at least 2 s more), never more than `lease_ms`."""
        if worker.max_task_ms:
            return worker.max_task_ms + self.lease_margin_ms
        longest = worker.longest_task_ms or self._longest_baseline_ms
        if longest:
            return min(self.lease_ms, longest + max(longest // 2, 2_000))
        return self.lease_ms

    def _dispatch(self, now_ms: int) -> Outcome:
        """Give queued tasks, oldest first, to the workers idle for longest."""
        outcome = Outcome()
        while self._queue and not self._held:
            worker = self.registry.take_longest_idle()
            if worker is None:
                break
            task = self._queue.popleft()
            task.attempt += 1
            task.token = self._new_token()
            task.worker_id = worker.worker_id
            task.assigned_ms = now_ms
            lease = self._lease_for(worker)
            # A worker remembered from before a restart may have died meanwhile: its busy report confirms it.
            task.lease_until_ms = now_ms + (lease if worker.heard else min(lease, self.confirm_ms))
            task.state = TaskState.ASSIGNED
            self._assigned[task.task_id] = task
            self.registry.mark_busy(worker, task.task_id, now_ms)
            worker.confirmed = False
            outcome.assignments.append(Assignment(task, worker.worker_id))
        return outcome
