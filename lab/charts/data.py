"""The numbers charts are drawn from, read out of task frames (``lab.runs.schema``): timestamps as float
milliseconds, service times and waits in seconds."""

from __future__ import annotations

import math

import pandas as pd


def ms(frame: pd.DataFrame, column: str) -> pd.Series:
    """``frame[column]`` as float milliseconds, NaN where unknown."""
    # Nullable Int64 or object columns with None: float gives NaN for unknown, fit for arithmetic.
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def origin_ms(tasks: pd.DataFrame | None) -> float:
    """The first submission in ms, NaN when no task has one."""
    if tasks is None or tasks.empty:
        return math.nan
    return float(ms(tasks, "submitted").min())


def service_times_s(tasks: pd.DataFrame) -> pd.Series:
    """Service time of each answered task in seconds: finished minus assigned (how long it held a worker),
    else the worker's processing_time_ms; tasks with neither are left out."""
    answered = tasks[tasks["outcome"] == "answered"]
    held = (ms(answered, "finished") - ms(answered, "assigned")) / 1000
    fallback = ms(answered, "processing_time_ms") / 1000
    times: pd.Series = held.where(held.notna(), fallback).dropna()
    return times[times >= 0]


def waits_s(tasks: pd.DataFrame) -> pd.Series:
    """Per task: seconds from submission to its first assignment; tasks never assigned are left out."""
    if tasks.empty:
        return pd.Series(dtype="float64")
    stamps = pd.DataFrame(
        {"task_id": tasks["task_id"], "submitted": ms(tasks, "submitted"), "assigned": ms(tasks, "assigned")}
    )
    # One row per task in collector frames, but frames with a row per attempt keep the first assignment.
    first = stamps.groupby("task_id", sort=False).min()
    waits: pd.Series = ((first["assigned"] - first["submitted"]) / 1000).dropna()
    return waits
