"""Waiting for a condition in tests, with a message that says what never happened: the one way tests wait
for something, instead of a fixed sleep (a sleep left in a test waits on purpose, and says why)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

INTERVAL = 0.05


async def eventually(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds (in a coroutine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(INTERVAL)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds (blocking: in plain tests
    and threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(INTERVAL)
