"""Unit tests of lab.analysis.failover: what each fault cost, from a run's tasks and faults."""

from __future__ import annotations

import math

import pandas as pd

from lab.analysis.failover import counts_over_time, fault_effects


def tasks(*rows: tuple[str, float | None, float | None]) -> pd.DataFrame:
    """Tasks as (id, submitted ms, delivered ms)."""
    frame: pd.DataFrame = pd.DataFrame(
        {
            "task_id": [r[0] for r in rows],
            "submitted": [r[1] for r in rows],
            "delivered": [r[2] for r in rows],
            "finished": [None for _ in rows],
        }
    )
    return frame


def test_a_fault_is_measured_from_its_time_to_the_next_acceptance_and_the_last_answer_of_what_was_open() -> None:
    frame = tasks(("a", 1_000, 2_000), ("b", 4_000, 12_000), ("c", 4_500, 9_000), ("d", 11_000, 13_000))
    effects = fault_effects(
        frame, [{"timestamp": 5_000, "action": "kill leader", "target": "m1", "leader_again_s": 5.4}]
    )
    row = effects.iloc[0]
    assert row["at_s"] == 4.0  # from the first submission
    assert (row["action"], row["target"], row["leader_again_s"]) == ("kill leader", "m1", 5.4)
    assert row["accepted_again_s"] == 6.0  # d, at 11 s
    assert row["open_at_fault"] == 2  # b and c; a was answered before
    assert row["drained_s"] == 7.0  # b, answered at 12 s
    assert row["unanswered"] == 0


def test_an_open_question_never_answered_is_counted_and_leaves_no_drain_time() -> None:
    frame = tasks(("a", 1_000, None), ("b", 2_000, 3_000))
    row = fault_effects(frame, [{"timestamp": 1_500, "action": "pause leader 12 s", "target": "m2"}]).iloc[0]
    assert row["unanswered"] == 1 and math.isnan(row["drained_s"])
    assert row["accepted_again_s"] == 0.5 and math.isnan(row["leader_again_s"])


def test_no_question_after_the_fault_means_never_accepted_again() -> None:
    row = fault_effects(tasks(("a", 1_000, 2_000)), [{"timestamp": 5_000}]).iloc[0]
    assert math.isnan(row["accepted_again_s"]) and row["open_at_fault"] == 0
    assert row["drained_s"] == 0.0  # nothing was open: nothing to wait for


def test_counts_over_time_are_cumulative() -> None:
    counts = counts_over_time(tasks(("a", 0, 1_000), ("b", 500, 2_000), ("c", 1_500, None)), step_s=0.5)
    assert counts["t_s"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert counts["accepted"].tolist() == [1, 2, 2, 3, 3]
    assert counts["answered"].tolist() == [0, 0, 1, 1, 2]
    assert counts_over_time(tasks()).empty
