"""Queue positions in a long queue: every change near the head, deeper only real moves, and nothing told
(or remembered) for a task assigned while positions were being sent."""

from __future__ import annotations

from typing import Any

import pytest

from services.master.service import DEEP_WALK_S, EXACT_POSITIONS, worth_telling
from tests.unit.master_fakes import started

LIFTED: dict[str, Any] = {
    "max_in_flight_per_session": 1000,
    "rate_per_minute": 1000,
    "max_in_flight_per_address": 1000,
    "rate_per_minute_per_address": 1000,
    "latency_target_seconds": 0.0,
}


@pytest.mark.parametrize(
    ("position", "told", "tell"),
    [
        (5, None, True),  # never told
        (5, 6, True),  # near the head every change
        (5, 5, False),
        (EXACT_POSITIONS, EXACT_POSITIONS + 1, True),
        (900, 1000, False),  # deeper: a tenth is no news
        (500, 1000, True),  # half is
        (101, 202, True),
        (102, 202, False),
        (1500, 1000, False),  # back in the queue (a requeue puts a task in front): not deeper news
    ],
)
def test_worth_telling(position: int, told: int | None, tell: bool) -> None:
    assert worth_telling(position, told) is tell


async def test_deep_in_the_queue_users_hear_when_their_position_halved_not_every_step() -> None:
    r = await started(**LIFTED)
    ids = [await r.ask(f"q{n}") for n in range(400)]
    r.sender.sent.clear()
    for n in range(5):  # five workers take the first five
        await r.worker(f"go-worker-{n}")
    await r.master.send_positions()
    told = {q.taskId: q.position for q in r.sender.queued()}
    # The first hundred of the rest hear their new place; nobody deeper moved by half (5 of >100).
    assert told == {task_id: position for position, task_id in enumerate(ids[5 : 5 + EXACT_POSITIONS], start=1)}
    r.sender.sent.clear()
    for n in range(5, 160):
        await r.worker(f"go-worker-{n}")
    await r.master.send_positions()  # the deep walk waits DEEP_WALK_S: only the head is told now
    assert {q.position for q in r.sender.queued()} <= set(range(1, EXACT_POSITIONS + 1))
    r.sender.sent.clear()
    r.clock.advance(round(DEEP_WALK_S * 1000))
    await r.master.send_positions()
    deep = {q.taskId: q.position for q in r.sender.queued() if q.position > EXACT_POSITIONS}
    # 160 taken: a task told 300 when it asked is at 140 now, less than half of it: told. One told 331 is at
    # 171: more than half, not yet.
    assert deep[ids[299]] == 300 - 160
    assert ids[330] not in deep
    assert all(position > EXACT_POSITIONS for position in deep.values())


async def test_a_task_assigned_while_positions_are_sent_is_neither_told_nor_remembered() -> None:
    r = await started()
    ids = [await r.ask(f"q{n}") for n in range(4)]
    await r.worker("go-worker-a")  # takes ids[0]: the others move up
    r.sender.sent.clear()
    taken: list[str] = []

    def workers_arrive_mid_walk(_: object) -> None:
        if not taken:  # while the first position is being sent, two workers take ids[1] and ids[2]
            for name in ("go-worker-b", "go-worker-c"):
                outcome = r.master.dispatcher.worker_online(name, "go", r.clock())
                for assignment in outcome.assignments:  # as Master._apply does with an assignment
                    r.master._sent_positions.pop(assignment.task.task_id, None)
                taken.append(name)

    r.sender.on_send = workers_arrive_mid_walk
    await r.master.send_positions()
    told = [q.taskId for q in r.sender.queued()]
    assert ids[2] not in told  # assigned before its turn in the walk came
    assert ids[2] not in r.master._sent_positions
    assert ids[3] in told
