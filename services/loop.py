"""The event loop the services run on: uvloop where it is installed, asyncio's own otherwise."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

# EVENT_LOOP's values; "auto" takes uvloop when it can be imported.
CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, Any]], Any]


def runner(choice: str) -> Runner:
    """What runs a service's main coroutine to completion on the loop `choice` names (asyncio.run's
    signature); an unknown choice, or "uvloop" without uvloop installed, is an error."""
    if choice not in CHOICES:
        raise ValueError(f"EVENT_LOOP must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError("EVENT_LOOP=uvloop but uvloop is not installed (pip install uvloop)") from None
        return asyncio.run
    # uvloop runs the same asyncio code with its I/O and scheduling in C (libuv): every task, status and
    # result costs the master and the workers less CPU (README, "Where it stands").
    return uvloop.run


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """asyncio.run(main) on the loop `choice` names, by default the one EVENT_LOOP names, as the services
    do (for the lab's clients and simulated workers)."""
    result: T = runner(choice or os.environ.get("EVENT_LOOP", "auto"))(main)
    return result
