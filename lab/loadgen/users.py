"""Load users: the corpus they ask from, connecting and closing them, sending one question, and running a
loop's coroutine from sync code (Jupyter included)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from lab.loadgen.client import ChatClient
from lab.loadgen.live import LiveStats
from lab.loadgen.options import CONNECT_BATCH
from lab.loadgen.result import Question
from lab.paths import CORPUS

__all__ = [
    "Answers",
    "all_answered",
    "check_users",
    "close_users",
    "connect_users",
    "load_corpus",
    "run_sync",
    "send",
    "steady_heap",
]

POLL_S = 0.2  # how often answers are counted into the live stats
FREEZE_EVERY_S = 1.0  # see steady_heap

T = TypeVar("T")


def load_corpus(path: str | Path = CORPUS) -> list[str]:
    """The questions of a corpus file: one per line, blank lines and lines starting with # skipped."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    questions = [line for line in lines if line and not line.startswith("#")]
    if not questions:
        raise ValueError(f"no questions in {path}")
    return questions


class Answers:
    """Feeds a run's live stats: sends, failures, and first answers found by looking only at open questions;
    the loops also wait on it for the last answers."""

    def __init__(self, stats: LiveStats) -> None:
        self.stats = stats
        self._open: list[Question] = []

    def sent(self) -> None:
        """A question goes out."""
        self.stats.on_sent()

    def failed(self) -> None:
        """A question was refused, or got no ack."""
        self.stats.on_failed()

    def expect(self, question: Question) -> None:
        """Watch an acknowledged question until its answer comes."""
        self._open.append(question)

    def count(self) -> int:
        """Feed newly answered questions to the stats; return how many are still open."""
        still: list[Question] = []
        for question in self._open:
            latency = question.latency_s()
            if question.answered_at is None or latency is None:
                still.append(question)
            else:
                self.stats.on_answered(question.answered_at, latency)
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


async def send(client: ChatClient, question: Question, api_key: str | None, timeout: float, answers: Answers) -> None:
    """Send `question` from `client` and record its ack, or why none came; watch it for its answer."""
    question.sent_at = time.monotonic()
    answers.sent()
    try:
        question.exchange = await client.ask(question.query, api_key, timeout=timeout)
    except Exception as exc:  # no ack: a timeout or a lost connection, counted as failed rather than raised
        question.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        answers.failed()
        return
    if question.exchange.task_id:
        answers.expect(question)
    else:
        question.error = question.exchange.ack.error or "refused"
        answers.failed()


async def all_answered(clients: Sequence[ChatClient], timeout: float) -> None:
    """Until every user has all its accepted questions answered, or `timeout` passed."""
    waits = (c.wait_answers(len(c.exchanges), timeout) for c in clients)
    await asyncio.gather(*waits, return_exceptions=True)  # a TimeoutError: that user's rest stay unanswered


def check_users(users: int, corpus: Sequence[str]) -> None:
    """Refuse fewer than one user or an empty corpus."""
    if users < 1:
        raise ValueError(f"users must be >= 1, got {users}")
    if not corpus:
        raise ValueError("the corpus has no questions")


@contextlib.asynccontextmanager
async def steady_heap() -> AsyncIterator[None]:
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


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end, in a thread of its own when this thread already runs a loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
