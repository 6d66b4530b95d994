"""What each fault of a run cost, read from the tasks the master reported (``lab.runs.schema``) and the faults as
the run did them (``run.params["faults"]``): how long until questions were accepted again, how long until every
question accepted before it was answered, and what was left unanswered."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lab.analysis.series import stamps_ms as ms

__all__ = ["counts_over_time", "fault_effects"]


def fault_effects(tasks: pd.DataFrame, faults: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per fault: its time (s from the first submission), action and target; `leader_again_s`, seconds
    until a master with a newer epoch led (when the fault measured it: standby masters); `accepted_again_s`, seconds
    from the fault to the first question accepted after it (NaN when none was); `drained_s`, seconds from the
    fault until every question accepted before it was answered (0: none was open; NaN when one never was);
    `open_at_fault`, how many were accepted and not yet answered then; `unanswered`, how many of those never were."""
    submitted, delivered = ms(tasks, "submitted"), ms(tasks, "delivered").fillna(ms(tasks, "finished"))
    origin = float(submitted.min()) if not tasks.empty else math.nan
    rows = []
    for fault in faults:
        at = float(fault["timestamp"])
        after = submitted[submitted > at]
        before = submitted <= at
        open_then = before & ~(delivered <= at)
        ends = delivered[open_then]
        rows.append(
            {
                "at_s": (at - origin) / 1000,
                "action": fault.get("action", ""),
                "target": fault.get("target", ""),
                "leader_again_s": float(fault.get("leader_again_s") or math.nan),
                "accepted_again_s": (float(after.min()) - at) / 1000 if not after.empty else math.nan,
                "drained_s": _drained_s(ends, at),
                "open_at_fault": int(open_then.sum()),
                "unanswered": int(ends.isna().sum()),
            }
        )
    columns = [
        "at_s",
        "action",
        "target",
        "leader_again_s",
        "accepted_again_s",
        "drained_s",
        "open_at_fault",
        "unanswered",
    ]
    effects: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return effects


def _drained_s(ends: pd.Series, at: float) -> float:
    """Seconds from `at` to the last of `ends` (0 when there are none; NaN when one is unknown: never answered)."""
    if ends.empty:
        return 0.0
    return (float(ends.max()) - at) / 1000 if ends.notna().all() else math.nan


def counts_over_time(tasks: pd.DataFrame, step_s: float = 0.5) -> pd.DataFrame:
    """Cumulative questions accepted and answered, every `step_s` seconds from the first submission to the last
    event: columns `t_s`, `accepted`, `answered`."""
    submitted = ms(tasks, "submitted").dropna()
    delivered = ms(tasks, "delivered").fillna(ms(tasks, "finished")).dropna()
    if submitted.empty:
        empty: pd.DataFrame = pd.DataFrame(columns=["t_s", "accepted", "answered"])
        return empty
    origin = float(submitted.min())
    end = max(float(submitted.max()), float(delivered.max()) if not delivered.empty else origin)
    t = np.arange(0.0, (end - origin) / 1000 + step_s, step_s)
    edges = origin + t * 1000
    accepted = np.searchsorted(np.sort(submitted.to_numpy()), edges, side="right")
    answered = np.searchsorted(np.sort(delivered.to_numpy()), edges, side="right")
    counts: pd.DataFrame = pd.DataFrame({"t_s": t, "accepted": accepted, "answered": answered})
    return counts
