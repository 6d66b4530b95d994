"""Load over Socket.IO as real users: arrival schedules, the chat client, open and closed loops with their
options, their live stats while they run, and what a run sent and got back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab._lazy import lazy_exports

if TYPE_CHECKING:
    from lab.loadgen.client import ChatClient, Exchange
    from lab.loadgen.closed_loop import closed_loop, closed_loop_async
    from lab.loadgen.live import LiveSnapshot, LiveStats
    from lab.loadgen.open_loop import open_loop, open_loop_async
    from lab.loadgen.options import LoadOptions
    from lab.loadgen.result import LoadResult, Question
    from lab.loadgen.users import load_corpus

__all__ = [
    "ChatClient",
    "Exchange",
    "LiveSnapshot",
    "LiveStats",
    "LoadOptions",
    "LoadResult",
    "Question",
    "closed_loop",
    "closed_loop_async",
    "load_corpus",
    "open_loop",
    "open_loop_async",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "ChatClient": "client",
        "Exchange": "client",
        "LiveSnapshot": "live",
        "LiveStats": "live",
        "LoadOptions": "options",
        "LoadResult": "result",
        "Question": "result",
        "closed_loop": "closed_loop",
        "closed_loop_async": "closed_loop",
        "load_corpus": "users",
        "open_loop": "open_loop",
        "open_loop_async": "open_loop",
    },
)
