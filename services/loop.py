"""The event loop the services run on: uvloop where it is installed, asyncio's own otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

# The values of the services' `event_loop` setting; "auto" takes uvloop when it can be imported.
CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, Any]], Any]


def _variable() -> str:
    """The setting's environment variable, for error messages (envconfig imports this module: import late)."""
    from services.envconfig import ServiceSettings

    return ServiceSettings.env_name("event_loop")


def runner(choice: str) -> Runner:
    """What runs a service's main coroutine to completion on the loop `choice` names (asyncio.run's
    signature); an unknown choice, or "uvloop" without uvloop installed, is an error."""
    if choice not in CHOICES:
        raise ValueError(f"{_variable()} must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError(f"{_variable()}=uvloop but uvloop is not installed (pip install uvloop)") from None
        return asyncio.run
    # uvloop runs the same asyncio code with its I/O and scheduling in C (libuv): every task, status and
    # result costs the master and the workers less CPU (README, "Where it stands").
    return uvloop.run


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """asyncio.run(main) on the loop `choice` names: pass the `event_loop` of the caller's settings. Without
    one (the lab's clients and simulated workers, as yet), the loop this process's environment names, read
    through the services' settings, so that they run on the loop the services do."""
    if choice is None:
        from services.envconfig import ServiceSettings  # envconfig imports this module: import late

        choice = ServiceSettings.read_one("event_loop")
    result: T = runner(choice)(main)
    return result
