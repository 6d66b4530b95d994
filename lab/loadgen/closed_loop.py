"""Closed loop: each user asks, waits for the answer, thinks, and asks again."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from lab.loadgen.client import ChatClient
from lab.loadgen.live import LiveStats
from lab.loadgen.live_monitor import LiveMonitor, LiveView, live_view
from lab.loadgen.options import DEFAULT_OPTIONS, LoadOptions
from lab.loadgen.result import LoadResult, Question
from lab.loadgen.users import Answers, check_users, close_users, connect_users, run_sync, send, steady_heap

__all__ = ["closed_loop", "closed_loop_async", "drive_closed_loop"]

RETRY_PAUSE_S = 0.1  # a user whose question was refused or lost pauses at least this long


def _check_closed(duration_s: float, think_time_s: float) -> None:
    if not duration_s > 0 or not think_time_s >= 0:
        raise ValueError(f"need duration_s > 0 and think_time_s >= 0, got {duration_s} and {think_time_s}")


def closed_loop(
    url: str,
    users: int,
    duration_s: float,
    think_time_s: float,
    corpus: Sequence[str],
    options: LoadOptions = DEFAULT_OPTIONS,
) -> LoadResult:
    """Each user asks, waits for the answer, thinks (exponential, mean `think_time_s`), and asks again.

    Users stop asking after `duration_s`; the run ends when their last answers came. A user whose answer
    takes longer than `options.answer_timeout_s` gives up (asking on would put two questions in flight); a
    refused or unacknowledged question is asked again after at least RETRY_PAUSE_S. Think times come from
    `options.seed`. With `options.progress`, live stats while it runs (as lab.loadgen.open_loop.open_loop).
    """
    with live_view(options.progress) as view:  # made here: a notebook widget must be shown from this thread
        return run_sync(closed_loop_async(url, users, duration_s, think_time_s, corpus, options, view=view))


async def closed_loop_async(
    url: str,
    users: int,
    duration_s: float,
    think_time_s: float,
    corpus: Sequence[str],
    options: LoadOptions = DEFAULT_OPTIONS,
    *,
    view: LiveView | None = None,
) -> LoadResult:
    """closed_loop inside a running event loop (`view`: where live stats go; default: as closed_loop)."""
    check_users(users, corpus)
    _check_closed(duration_s, think_time_s)
    clients = await connect_users(url, users, options.connect_batch, options.progress)
    try:
        return await drive_closed_loop(clients, duration_s, think_time_s, corpus, options, view=view)
    finally:
        await close_users(clients)


async def drive_closed_loop(
    clients: Sequence[ChatClient],
    duration_s: float,
    think_time_s: float,
    corpus: Sequence[str],
    options: LoadOptions = DEFAULT_OPTIONS,
    *,
    view: LiveView | None = None,
) -> LoadResult:
    """The closed loop over users already connected (they stay connected): see closed_loop. Live stats go
    to `view`, or with `options.progress` to one made for the run."""
    check_users(len(clients), corpus)
    _check_closed(duration_s, think_time_s)
    questions: list[Question] = []
    stats = LiveStats("closed loop", time.monotonic(), duration_s=duration_s)
    answers = Answers(stats)
    counting = asyncio.get_running_loop().create_task(answers.keep_counting())

    async def user(index: int, client: ChatClient) -> None:
        rng = random.Random(f"{options.seed}-{index}")  # per user, so a user's pauses do not depend on the others

        def think() -> float:
            return rng.expovariate(1 / think_time_s) if think_time_s else 0.0

        # Exponential think time is memoryless: a first pause drawn like the others puts the users where a
        # population that has been running for a while would be, instead of all asking at once.
        await asyncio.sleep(think())
        while time.monotonic() < stop_at:
            question = Question(user=index, query=corpus[len(questions) % len(corpus)])
            questions.append(question)
            await send(client, question, options.api_key, options.ack_timeout_s, answers)
            if question.acknowledged:
                try:
                    await client.wait_answers(len(client.exchanges), options.answer_timeout_s)
                except TimeoutError:
                    return  # this user gives up; asking again would put two questions in flight
                pause = think()
            else:
                pause = max(think(), RETRY_PAUSE_S)
            await asyncio.sleep(pause)

    try:
        async with steady_heap(), LiveMonitor(stats, view, clients[0].url, options.progress, options.operator_token):
            started = stats.started = time.monotonic()
            stop_at = started + duration_s
            await asyncio.gather(*(user(i, c) for i, c in enumerate(clients)))
            ended = time.monotonic()
            answers.count()
            await asyncio.sleep(options.linger_s)  # a duplicate answer would come now
    finally:
        counting.cancel()
    return LoadResult("closed", len(clients), started, ended, questions)
