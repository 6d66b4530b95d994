"""The scale benchmark's figures from made-up records, without a system."""

from __future__ import annotations

import argparse

from matplotlib.figure import Figure

from lab.bench import scale as bench_scale
from lab.bench.scale import Timeline
from lab.bench.sim_workers import TaskRecord
from lab.observe.master_probe import Sample, WatchLog

MS = 1_000_000  # ns
T0 = 1_800_000_000_000 * MS  # a wall-clock instant in ns


def record(task: str, worker: str, received_ms: int, sent_ms: int) -> TaskRecord:
    return TaskRecord(task, worker, 1, T0 + received_ms * MS, T0 + sent_ms * MS, T0 + sent_ms * MS + MS, True)


RECORDS = [
    record("a1", "w-a", 0, 1),
    record("b1", "w-b", 2, 3),
    record("a2", "w-a", 11, 12),  # 10 ms after a1's result
    record("a3", "w-a", 32, 33),  # 20 ms after a2's
    record("b2", "w-b", 33, 34),  # 30 ms after b1's
]


def test_a_handover_pairs_each_task_with_the_next_on_the_same_worker() -> None:
    pairs = bench_scale.handovers(list(reversed(RECORDS)))
    assert sorted((a.task_id, b.task_id) for a, b in pairs) == [("a1", "a2"), ("a2", "a3"), ("b1", "b2")]


def test_figures_measure_handovers_drain_and_memory() -> None:
    args = argparse.Namespace(workers=2, tasks=5, processes=1, clients=1, work_seconds=0.0, watch=True)
    t0 = T0 / 1e9
    timeline = Timeline(
        submit_started=t0 - 2, submit_ended=t0 - 1, workers_started=t0 - 0.5, accepted=5, answer_times=[t0 + 0.04] * 5
    )
    timeline.answers = 5
    samples = [
        Sample(t0 - 2, 80 * 1024, 80 * 1024, 1.0, 0),
        Sample(t0 - 0.6, 90 * 1024, 90 * 1024, 1.5, 5),
        Sample(t0 + 0.5, 95 * 1024, 100 * 1024, 1.7, 0),
    ]
    # The master assigned a2 4 ms after it accepted a1 (stamped 5 ms after a1's result left).
    watch = WatchLog("unused", events=[("task.answered", 1_800_000_000_006, "a1", "w-a", 1, 3)])
    watch.events.append(("task.assigned", 1_800_000_000_010, "a2", "w-a", 1, 2))
    result = bench_scale.figures(args, timeline, RECORDS, samples, watch)
    assert result["answered"] == 5 and result["duplicates"] == 0
    assert result["handovers"] == 3
    assert result["dispatch_p50_ms"] == 20.0 and result["dispatch_max_ms"] == 30.0
    assert result["drain_s"] == 0.04 and result["dispatch_rate_per_s"] == 125.0
    assert (result["master_rss_mb"], result["master_rss_idle_mb"], result["master_rss_queued_mb"]) == (100, 80, 90)
    assert result["master_cpu_s"] == 0.2
    assert result["workers_used"] == 2 and result["tasks_per_worker_max"] == 3
    assert (result["result_to_accept_p50_ms"], result["accept_to_assign_p50_ms"]) == (5.0, 4.0)
    assert result["assign_to_receive_p50_ms"] == 1.0
    assert result["series"]["queue"] == [0, 5, 0]
    assert isinstance(bench_scale.chart(result), Figure)
    assert "2 workers drained 5 of 5" in bench_scale.summary(result)
