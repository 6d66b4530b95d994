"""Load over Socket.IO as real users: open-loop users on an arrival schedule, closed-loop users with think time.

Open loop sends each question at its scheduled time whatever the system does (no coordinated omission) and
records how late the send really was. Thousands of users fit in one process: they connect in batches,
answers are counted by polling only the questions still open, and full garbage collections are kept off
the event loop during a run (see _steady_heap). `generator_limit` measures how far it goes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from lab.arrivals import constant
from lab.client import ChatClient, Exchange
from lab.cluster import LocalCluster
from lab.ports import accepts_tcp, free_port
from lab.stats import percentile

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_PATH = REPO_ROOT / "data" / "questions.txt"
CONNECT_BATCH = 100
POLL_S = 0.2  # how often the progress bar counts answers
FREEZE_EVERY_S = 1.0  # see _steady_heap
RETRY_PAUSE_S = 0.1  # a closed-loop user whose question was refused or lost pauses at least this long

T = TypeVar("T")


def load_corpus(path: str | Path = CORPUS_PATH) -> list[str]:
    """The questions of a corpus file: one per line, blank lines and lines starting with # skipped."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    questions = [line for line in lines if line and not line.startswith("#")]
    if not questions:
        raise ValueError(f"no questions in {path}")
    return questions


@dataclass
class Question:
    """One question a load user sent, and what became of it (times are time.monotonic())."""

    user: int
    query: str
    scheduled_at: float | None = None  # when it was due (open loop); None in a closed loop
    sent_at: float = 0.0
    exchange: Exchange | None = None  # None until acknowledged, and for a send that got no ack
    error: str = ""  # the refusal in the ack, or why no ack came

    @property
    def acknowledged(self) -> bool:
        """The master accepted it (the ack carries a task id)."""
        return self.exchange is not None and bool(self.exchange.task_id)

    @property
    def refused(self) -> bool:
        """The master answered the send with an error instead of a task id."""
        return self.exchange is not None and not self.exchange.task_id

    @property
    def failed(self) -> bool:
        """No ack came at all (timeout or lost connection)."""
        return self.exchange is None and bool(self.error)

    @property
    def answered_at(self) -> float | None:
        """When the first answer arrived."""
        return None if self.exchange is None else self.exchange.answered_at

    @property
    def send_lag_s(self) -> float:
        """How late the send was against its schedule (0 in a closed loop)."""
        return 0.0 if self.scheduled_at is None else self.sent_at - self.scheduled_at

    def latency_s(self, from_scheduled: bool = True) -> float | None:
        """Seconds to the first answer, from the scheduled time (so a late send counts) or the actual send."""
        if self.answered_at is None:
            return None
        since = self.scheduled_at if from_scheduled and self.scheduled_at is not None else self.sent_at
        return self.answered_at - since


@dataclass
class LoadResult:
    """Every question of a run with its user, and the run's start and end (time.monotonic())."""

    kind: str  # "open" or "closed"
    users: int
    started: float
    ended: float
    questions: list[Question]

    def exchanges(self) -> list[tuple[int, Exchange]]:
        """(user index, exchange) of every acknowledged question, in send order."""
        return [(q.user, q.exchange) for q in self.questions if q.exchange is not None and q.acknowledged]

    @property
    def sent(self) -> int:
        """Questions sent (whatever became of them)."""
        return len(self.questions)

    @property
    def acknowledged(self) -> int:
        """Questions the master accepted."""
        return sum(q.acknowledged for q in self.questions)

    @property
    def refused(self) -> int:
        """Questions the master refused in its ack (a limit, bad input)."""
        return sum(q.refused for q in self.questions)

    @property
    def failed(self) -> int:
        """Questions that got no ack at all."""
        return sum(q.failed for q in self.questions)

    @property
    def answered(self) -> int:
        """Accepted questions with at least one answer."""
        return sum(q.answered_at is not None for q in self.questions)

    @property
    def unanswered(self) -> int:
        """Accepted questions still without an answer when the run ended."""
        return self.acknowledged - self.answered

    @property
    def duplicates(self) -> int:
        """Answers beyond the first one of each question."""
        return sum(max(len(e.answers) - 1, 0) for _, e in self.exchanges())

    def latencies_s(self, from_scheduled: bool = True) -> list[float]:
        """Seconds to the first answer of each answered question, in send order (see Question.latency_s)."""
        values = (q.latency_s(from_scheduled) for q in self.questions)
        return [v for v in values if v is not None]

    def send_lags_s(self) -> list[float]:
        """How late each send was against its schedule (open loop)."""
        return [q.send_lag_s for q in self.questions if q.sent_at]

    def max_send_lag_s(self) -> float:
        """The latest send against its schedule; 0 without sends."""
        return max(self.send_lags_s(), default=0.0)

    def throughput_per_s(self) -> float:
        """Answers per second from the start of the run to the last answer; 0 without answers."""
        last = max((q.answered_at for q in self.questions if q.answered_at is not None), default=None)
        return 0.0 if last is None or last <= self.started else self.answered / (last - self.started)

    def summary(self) -> dict[str, float]:
        """Counts, send lag and latency percentiles, throughput: one flat dict for printing or JSON."""
        lags, latencies = self.send_lags_s(), self.latencies_s()
        figures: dict[str, float] = {
            "users": self.users,
            "seconds": round(self.ended - self.started, 2),
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "refused": self.refused,
            "failed": self.failed,
            "answered": self.answered,
            "unanswered": self.unanswered,
            "duplicates": self.duplicates,
            "throughput_per_s": round(self.throughput_per_s(), 1),
        }
        for name, values in (("send_lag_ms", lags), ("latency_ms", latencies)):
            for q in (50, 99):
                figures[f"{name}_p{q}"] = round(1000 * percentile(values, q), 1)
            figures[f"{name}_max"] = round(1000 * max(values, default=float("nan")), 1)
        return figures


class _Answers:
    """Counts first answers for the progress bar and waits for the last ones, looking only at open questions."""

    def __init__(self, bar: tqdm[Any]) -> None:
        self.bar = bar
        self._open: list[Question] = []

    def expect(self, question: Question) -> None:
        """Watch an acknowledged question until its answer comes."""
        self._open.append(question)

    def count(self) -> int:
        """Move newly answered questions to the bar; return how many are still open."""
        still = [q for q in self._open if q.answered_at is None]
        self.bar.update(len(self._open) - len(still))
        self._open = still
        return len(still)

    async def keep_counting(self) -> None:
        """Forever: count every POLL_S (cancel it)."""
        while True:
            self.count()
            await asyncio.sleep(POLL_S)


async def connect_users(url: str, count: int, batch: int = CONNECT_BATCH, progress: bool = False) -> list[ChatClient]:
    """Connect `count` users, `batch` at a time (all at once would swamp the master's accept loop)."""
    clients: list[ChatClient] = []
    with tqdm(total=count, desc="connecting", unit="user", disable=not progress, leave=False) as bar:
        try:
            for first in range(0, count, batch):
                group = [ChatClient(url) for _ in range(min(batch, count - first))]
                clients.extend(group)
                await asyncio.gather(*(c.connect() for c in group))
                bar.update(len(group))
        except BaseException:
            await close_users(clients)
            raise
    return clients


async def close_users(clients: Sequence[ChatClient]) -> None:
    """Disconnect every user, ignoring users that are already gone."""
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _send(client: ChatClient, question: Question, api_key: str | None, timeout: float, answers: _Answers) -> None:
    question.sent_at = time.monotonic()
    try:
        question.exchange = await client.ask(question.query, api_key, timeout=timeout)
    except Exception as exc:  # no ack: a timeout or a lost connection, counted as failed rather than raised
        question.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return
    if question.exchange.task_id:
        answers.expect(question)
    else:
        question.error = str(question.exchange.ack.get("error", "refused"))


async def _all_answered(clients: Sequence[ChatClient], timeout: float) -> None:
    """Until every user has all its accepted questions answered, or `timeout` passed."""
    waits = (c.wait_answers(len(c.exchanges), timeout) for c in clients)
    await asyncio.gather(*waits, return_exceptions=True)  # a TimeoutError: that user's rest stay unanswered


def _check_schedule(schedule: Sequence[float]) -> None:
    if any(b < a for a, b in itertools.pairwise(schedule)) or (schedule and schedule[0] < 0):
        raise ValueError("the schedule must be sorted seconds from the start, none negative")


def _check_closed(duration_s: float, think_time_s: float) -> None:
    if not duration_s > 0 or not think_time_s >= 0:
        raise ValueError(f"need duration_s > 0 and think_time_s >= 0, got {duration_s} and {think_time_s}")


def _check_common(users: int, corpus: Sequence[str]) -> None:
    if users < 1:
        raise ValueError(f"users must be >= 1, got {users}")
    if not corpus:
        raise ValueError("the corpus has no questions")


async def open_loop_async(
    url: str,
    schedule: Sequence[float],
    users: int,
    corpus: Sequence[str],
    api_key: str | None = None,
    progress: bool = True,
    *,
    ack_timeout_s: float = 10.0,
    answer_timeout_s: float = 60.0,
    linger_s: float = 0.5,
    connect_batch: int = CONNECT_BATCH,
) -> LoadResult:
    """open_loop inside a running event loop."""
    _check_common(users, corpus)
    _check_schedule(schedule)
    clients = await connect_users(url, users, connect_batch, progress)
    try:
        return await drive_open_loop(
            clients,
            schedule,
            corpus,
            api_key,
            progress,
            ack_timeout_s=ack_timeout_s,
            answer_timeout_s=answer_timeout_s,
            linger_s=linger_s,
        )
    finally:
        await close_users(clients)


async def drive_open_loop(
    clients: Sequence[ChatClient],
    schedule: Sequence[float],
    corpus: Sequence[str],
    api_key: str | None = None,
    progress: bool = True,
    *,
    ack_timeout_s: float = 10.0,
    answer_timeout_s: float = 60.0,
    linger_s: float = 0.5,
) -> LoadResult:
    """The open loop over users already connected (they stay connected): see open_loop."""
    _check_common(len(clients), corpus)
    _check_schedule(schedule)
    users = len(clients)
    questions: list[Question] = []
    loop = asyncio.get_running_loop()
    sends: list[asyncio.Task[None]] = []
    bar = tqdm(total=len(schedule), desc="open loop", unit="answer", disable=not progress)
    answers = _Answers(bar)
    counting = loop.create_task(answers.keep_counting())
    try:
        async with _steady_heap():
            started = time.monotonic()
            i = 0
            while i < len(schedule):
                # Start every send that is due in one go: one per loop turn could not catch up after a stall
                # once a turn takes longer than the gap between sends.
                now = time.monotonic()
                while i < len(schedule) and started + schedule[i] <= now:
                    question = Question(
                        user=i % users, query=corpus[i % len(corpus)], scheduled_at=started + schedule[i]
                    )
                    questions.append(question)
                    client = clients[question.user]
                    sends.append(loop.create_task(_send(client, question, api_key, ack_timeout_s, answers)))
                    i += 1
                if i < len(schedule):
                    await asyncio.sleep(max(started + schedule[i] - time.monotonic(), 0.0))
            await asyncio.gather(*sends)
            await _all_answered(clients, answer_timeout_s)
            ended = time.monotonic()
            answers.count()
            await asyncio.sleep(linger_s)  # a duplicate answer would come now
    finally:
        counting.cancel()
        for send in sends:
            send.cancel()
        bar.close()
    return LoadResult("open", users, started, ended, questions)


async def closed_loop_async(
    url: str,
    users: int,
    duration_s: float,
    think_time_s: float,
    corpus: Sequence[str],
    api_key: str | None = None,
    progress: bool = True,
    *,
    seed: int = 0,
    ack_timeout_s: float = 10.0,
    answer_timeout_s: float = 60.0,
    linger_s: float = 0.5,
    connect_batch: int = CONNECT_BATCH,
) -> LoadResult:
    """closed_loop inside a running event loop."""
    _check_common(users, corpus)
    _check_closed(duration_s, think_time_s)
    clients = await connect_users(url, users, connect_batch, progress)
    try:
        return await drive_closed_loop(
            clients,
            duration_s,
            think_time_s,
            corpus,
            api_key,
            progress,
            seed=seed,
            ack_timeout_s=ack_timeout_s,
            answer_timeout_s=answer_timeout_s,
            linger_s=linger_s,
        )
    finally:
        await close_users(clients)


async def drive_closed_loop(
    clients: Sequence[ChatClient],
    duration_s: float,
    think_time_s: float,
    corpus: Sequence[str],
    api_key: str | None = None,
    progress: bool = True,
    *,
    seed: int = 0,
    ack_timeout_s: float = 10.0,
    answer_timeout_s: float = 60.0,
    linger_s: float = 0.5,
) -> LoadResult:
    """The closed loop over users already connected (they stay connected): see closed_loop."""
    _check_common(len(clients), corpus)
    _check_closed(duration_s, think_time_s)
    questions: list[Question] = []
    bar = tqdm(desc="closed loop", unit="answer", disable=not progress)
    answers = _Answers(bar)
    counting = asyncio.get_running_loop().create_task(answers.keep_counting())

    async def user(index: int, client: ChatClient) -> None:
        rng = random.Random(f"{seed}-{index}")  # per user, so a user's pauses do not depend on the others

        def think() -> float:
            return rng.expovariate(1 / think_time_s) if think_time_s else 0.0

        # Exponential think time is memoryless: a first pause drawn like the others puts the users where a
        # population that has been running for a while would be, instead of all asking at once.
        await asyncio.sleep(think())
        while time.monotonic() < stop_at:
            question = Question(user=index, query=corpus[len(questions) % len(corpus)])
            questions.append(question)
            await _send(client, question, api_key, ack_timeout_s, answers)
            if question.acknowledged:
                try:
                    await client.wait_answers(len(client.exchanges), answer_timeout_s)
                except TimeoutError:
                    return  # this user gives up; asking again would put two questions in flight
                pause = think()
            else:
                pause = max(think(), RETRY_PAUSE_S)
            await asyncio.sleep(pause)

    try:
        async with _steady_heap():
            started = time.monotonic()
            stop_at = started + duration_s
            await asyncio.gather(*(user(i, c) for i, c in enumerate(clients)))
            ended = time.monotonic()
            answers.count()
            await asyncio.sleep(linger_s)  # a duplicate answer would come now
    finally:
        counting.cancel()
        bar.close()
    return LoadResult("closed", len(clients), started, ended, questions)


@contextlib.asynccontextmanager
async def _steady_heap() -> AsyncIterator[None]:
    """Keep full garbage collections from stalling a run; collect what they would have after it.

    A full collection scans every object: with thousands of connected users, or the record of a long run,
    it stops the loop for 100-400 ms, which shows up as send lag and latency. So collect once before the
    run, then move every object to the permanent generation each FREEZE_EVERY_S (gc.freeze) so no
    collection scans them; gc.unfreeze() at the end hands them, and the cycles made meanwhile, back.
    """
    gc.collect()
    gc.freeze()

    async def refreeze() -> None:
        while True:
            await asyncio.sleep(FREEZE_EVERY_S)
            gc.freeze()

    task = asyncio.get_running_loop().create_task(refreeze())
    try:
        yield
    finally:
        task.cancel()
        gc.unfreeze()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end, in a thread of its own when this thread already runs a loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def open_loop(
    url: str,
    schedule: Sequence[float],
    users: int,
    corpus: Sequence[str],
    api_key: str | None = None,
    progress: bool = True,
    *,
    ack_timeout_s: float = 10.0,
    answer_timeout_s: float = 60.0,
    linger_s: float = 0.5,
    connect_batch: int = CONNECT_BATCH,
) -> LoadResult:
    """Send corpus questions at the `schedule` (sorted seconds from the start), round-robin over `users` users.

    No send waits for an answer, so a stalled system shows up as latency and nothing is omitted; each send's
    lateness is kept (Question.send_lag_s). After the last send, wait up to `answer_timeout_s` for the
    answers, then `linger_s` more for duplicates. A send without an ack within `ack_timeout_s` counts as
    failed. Users connect `connect_batch` at a time. Works inside Jupyter's loop too (in a thread).
    """
    run = open_loop_async(
        url,
        schedule,
        users,
        corpus,
        api_key,
        progress,
        ack_timeout_s=ack_timeout_s,
        answer_timeout_s=answer_timeout_s,
        linger_s=linger_s,
        connect_batch=connect_batch,
    )
    return _run(run)


def closed_loop(
    url: str,
    users: int,
    duration_s: float,
    think_time_s: float,
    corpus: Sequence[str],
    api_key: str | None = None,
    progress: bool = True,
    *,
    seed: int = 0,
    ack_timeout_s: float = 10.0,
    answer_timeout_s: float = 60.0,
    linger_s: float = 0.5,
    connect_batch: int = CONNECT_BATCH,
) -> LoadResult:
    """Each user asks, waits for the answer, thinks (exponential, mean `think_time_s`), and asks again.

    Users stop asking after `duration_s`; the run ends when their last answers came. A user whose answer
    takes longer than `answer_timeout_s` gives up (asking on would put two questions in flight); a refused
    or unacknowledged question is asked again after at least RETRY_PAUSE_S. Think times come from `seed`.
    """
    run = closed_loop_async(
        url,
        users,
        duration_s,
        think_time_s,
        corpus,
        api_key,
        progress,
        seed=seed,
        ack_timeout_s=ack_timeout_s,
        answer_timeout_s=answer_timeout_s,
        linger_s=linger_s,
        connect_batch=connect_batch,
    )
    return _run(run)


# -- how far the generator goes ---------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _target(kind: str, workers: int) -> Iterator[tuple[str, dict[str, list[int]]]]:
    """The URL to load and the pids of the processes behind it, by role, while the target runs."""
    if kind == "echo":
        port = free_port()
        echo = subprocess.Popen([sys.executable, "-m", "lab.echo_master", "--port", str(port)], cwd=REPO_ROOT)
        try:
            deadline = time.monotonic() + 15
            while not accepts_tcp("127.0.0.1", port):
                if echo.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the echo master did not start (exit code {echo.poll()})")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}", {"server": [echo.pid]}
        finally:
            echo.terminate()
            echo.wait(5)
        return
    if kind != "system":
        raise ValueError(f"target must be 'system' or 'echo', got {kind!r}")
    env = {
        "LOG_LEVEL": "WARNING",
        "OFFLINE_LATENCY_MS": "0",
        # The generator asks far more per session than a person: lift the per-session limits.
        "RATE_PER_MINUTE": "1000000",
        "MAX_IN_FLIGHT_PER_SESSION": "1000000",
    }
    with LocalCluster(
        workers=workers,
        work_seconds=0.0,
        web_port=0,
        grpc_port=0,
        mqtt_port=0,
        model_mode="offline",
        log_sink=lambda name, line: None,
        extra_env=env,
    ) as cluster:
        procs = cluster.processes
        yield (
            cluster.web_url,
            {
                "master": [procs["master"].pid],
                "workers": [p.pid for name, p in procs.items() if name.startswith("worker")],
                "broker": [procs["mosquitto"].pid],
            },
        )


async def _step_rates(
    url: str,
    pids: dict[str, list[int]],
    rates: Sequence[float],
    seconds: float,
    users: int,
    lag_limit_s: float,
    latency_limit_s: float,
    progress: bool,
) -> list[dict[str, float]]:
    corpus = load_corpus()
    rows: list[dict[str, float]] = []
    connecting = time.monotonic()
    clients = await connect_users(url, users, progress=progress)
    connect_s = time.monotonic() - connecting
    try:
        for rate in rates:

            def cpu() -> dict[str, float]:
                return {"generator": time.process_time(), **{k: sum(map(_cpu_seconds, v)) for k, v in pids.items()}}

            before, wall = cpu(), time.monotonic()
            result = await drive_open_loop(clients, constant(rate, seconds), corpus, progress=progress, linger_s=0)
            after, wall = cpu(), time.monotonic() - wall
            row: dict[str, float] = {"rate_per_s": rate, "connect_s": round(connect_s, 2), **result.summary()}
            row.update({f"{k}_cpu_pct": round(100 * (after[k] - before[k]) / wall, 1) for k in before})
            rows.append(row)
            lag_p99 = percentile(result.send_lags_s(), 99)
            latency_p99 = percentile(result.latencies_s(), 99)
            if lag_p99 > lag_limit_s or result.unanswered or result.failed or latency_p99 > latency_limit_s:
                break
    finally:
        await close_users(clients)
    return rows


def generator_limit(
    rates: Sequence[float] = (50, 100, 200, 400, 800, 1600),
    seconds: float = 10.0,
    users: int = 100,
    target: str = "system",
    workers: int = 2,
    lag_limit_s: float = 0.05,
    latency_limit_s: float = 1.0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Open loop at each rate in turn until the send lag p99 passes `lag_limit_s` or the answers lag (one
    unanswered or unacknowledged, or latency p99 past `latency_limit_s`); the last row is the one that failed.

    `target` "system" is a local system with `workers` workers, WORK_SECONDS=0 and no model latency;
    "echo" is lab.echo_master, which answers at once, so that only the generator can run out. The same
    `users` stay connected for every rate. Each row is the run's summary, the time to connect the users, and
    the CPU used by this process (the generator) and by each process of the target, in % of one core.
    """
    with _target(target, workers) as (url, pids):
        return _run(_step_rates(url, pids, rates, seconds, users, lag_limit_s, latency_limit_s, progress))
