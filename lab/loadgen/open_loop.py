"""Open loop: questions sent at an arrival schedule's times whatever the system does (no coordinated
omission), each send's lateness recorded. Thousands of users fit in one process: they connect in batches,
answers are counted by polling only the questions still open, and full garbage collections are kept off the
event loop during a run (see lab.loadgen.users.steady_heap)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

from lab.loadgen.client import ChatClient
from lab.loadgen.live import LiveStats
from lab.loadgen.live_monitor import LiveMonitor, LiveView, live_view
from lab.loadgen.options import DEFAULT_OPTIONS, LoadOptions
from lab.loadgen.result import LoadResult, Question
from lab.loadgen.users import (
    Answers,
    all_answered,
    check_users,
    close_users,
    connect_users,
    run_sync,
    send,
    steady_heap,
)

__all__ = ["drive_open_loop", "open_loop", "open_loop_async"]


def _check_schedule(schedule: Sequence[float]) -> None:
    if any(b < a for a, b in itertools.pairwise(schedule)) or (schedule and schedule[0] < 0):
        raise ValueError("the schedule must be sorted seconds from the start, none negative")


def open_loop(
    url: str, schedule: Sequence[float], users: int, corpus: Sequence[str], options: LoadOptions = DEFAULT_OPTIONS
) -> LoadResult:
    """Send corpus questions at the `schedule` (sorted seconds from the start), round-robin over `users` users.

    No send waits for an answer, so a stalled system shows up as latency and nothing is omitted; each send's
    lateness is kept (Question.send_lag_s). With `options.progress`, live stats while it runs (see
    lab.loadgen.live_monitor.choose_view). Timeouts and the rest: see LoadOptions. Works inside Jupyter's
    loop too (in a thread).
    """
    with live_view(options.progress) as view:  # made here: a notebook widget must be shown from this thread
        return run_sync(open_loop_async(url, schedule, users, corpus, options, view=view))


async def open_loop_async(
    url: str,
    schedule: Sequence[float],
    users: int,
    corpus: Sequence[str],
    options: LoadOptions = DEFAULT_OPTIONS,
    *,
    view: LiveView | None = None,
) -> LoadResult:
    """open_loop inside a running event loop (`view`: where live stats go; default: as open_loop)."""
    check_users(users, corpus)
    _check_schedule(schedule)
    clients = await connect_users(url, users, options.connect_batch, options.progress)
    try:
        return await drive_open_loop(clients, schedule, corpus, options, view=view)
    finally:
        await close_users(clients)


async def drive_open_loop(
    clients: Sequence[ChatClient],
    schedule: Sequence[float],
    corpus: Sequence[str],
    options: LoadOptions = DEFAULT_OPTIONS,
    *,
    view: LiveView | None = None,
) -> LoadResult:
    """The open loop over users already connected (they stay connected): see open_loop. Live stats go to
    `view`, or with `options.progress` to one made for the run."""
    check_users(len(clients), corpus)
    _check_schedule(schedule)
    users = len(clients)
    questions: list[Question] = []
    loop = asyncio.get_running_loop()
    sends: list[asyncio.Task[None]] = []
    duration = float(schedule[-1]) if schedule else None
    stats = LiveStats("open loop", time.monotonic(), planned=len(schedule), duration_s=duration)
    answers = Answers(stats)
    counting = loop.create_task(answers.keep_counting())
    try:
        async with steady_heap(), LiveMonitor(stats, view, clients[0].url, options.progress, options.operator_token):
            started = stats.started = time.monotonic()
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
                    sends.append(
                        loop.create_task(send(client, question, options.api_key, options.ack_timeout_s, answers))
                    )
                    i += 1
                if i < len(schedule):
                    await asyncio.sleep(max(started + schedule[i] - time.monotonic(), 0.0))
            await asyncio.gather(*sends)
            await all_answered(clients, options.answer_timeout_s)
            ended = time.monotonic()
            answers.count()
            await asyncio.sleep(options.linger_s)  # a duplicate answer would come now
    finally:
        counting.cancel()
        for task in sends:
            task.cancel()
    return LoadResult("open", users, started, ended, questions)
