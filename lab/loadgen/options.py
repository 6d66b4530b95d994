"""How load users ask: one frozen object instead of the same keyword arguments at every layer."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CONNECT_BATCH", "DEFAULT_OPTIONS", "LoadOptions"]

CONNECT_BATCH = 100


@dataclass(frozen=True)
class LoadOptions:
    """What open and closed loops share besides their shape.

    A send without an ack within `ack_timeout_s` counts as failed; after the last send, the loop waits up
    to `answer_timeout_s` for the answers, then `linger_s` more for duplicates. Users connect
    `connect_batch` at a time. `seed` draws the closed loop's think times; `progress` shows live stats (a table
    redrawn on a terminal, a line every few seconds into a log, a widget in Jupyter: see
    lab.loadgen.live_monitor). `operator_token` lets the live stats read the master's queue (/api/status).
    """

    api_key: str | None = None
    progress: bool = True
    ack_timeout_s: float = 10.0
    answer_timeout_s: float = 60.0
    linger_s: float = 0.5
    connect_batch: int = CONNECT_BATCH
    seed: int = 0
    operator_token: str | None = field(default=None, repr=False)


DEFAULT_OPTIONS = LoadOptions()
