"""The worker's simulated work lasts at least WORK_SECONDS, on uvloop as on asyncio's own loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.loop import runner
from services.worker.runner import sleep_at_least


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_simulated_work_never_ends_early(loop: str) -> None:
    async def shortest(sleeps: int, seconds: float) -> float:
        shortest = float("inf")
        for _ in range(sleeps):
            started = time.monotonic()
            await sleep_at_least(seconds)
            shortest = min(shortest, time.monotonic() - started)
        return shortest

    # uvloop ends about one plain asyncio.sleep in fifty up to a millisecond early: 100 sleeps would catch it.
    assert runner(loop)(shortest(100, 0.005)) >= 0.005


def test_no_work_is_no_wait() -> None:
    started = time.monotonic()
    asyncio.run(sleep_at_least(0))
    assert time.monotonic() - started < 0.05
