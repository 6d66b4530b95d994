"""`lab bench scale` and its simulated workers against a real master, with tiny parameters."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from lab.bench import scale as bench_scale
from lab.bench.sim_workers import ID_PREFIX, SimFleet
from lab.loadgen.client import ChatClient
from lab.system.presets import sessions_unlimited
from tests.conftest import ClusterFactory, require_mosquitto

pytestmark = pytest.mark.integration

UNLIMITED = sessions_unlimited()


async def test_simulated_workers_results_are_accepted_by_the_master(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(workers=0, work_seconds=0.0, extra_env=UNLIMITED)
    fleet = SimFleet(cluster, workers=3, processes=1, records_dir=tmp_path)
    with fleet:
        fleet.wait_online(timeout=30)
        async with ChatClient(cluster.web_url) as user:
            for i in range(9):
                await user.ask(f"simulated question {i}")
            answered = await user.wait_answers(9, timeout=30)
        workers = {w["worker_id"]: w for w in cluster.status()["workers"]}
    records = fleet.stop()
    # The master answered through them: each result carried the task's id, attempt and token over gRPC.
    assert {e.answer.workerId for e in answered if e.answer} <= set(workers)
    assert all(e.answer.workerId.startswith(ID_PREFIX) for e in answered if e.answer)
    assert sum(w["tasks_done"] for w in workers.values()) == 9
    assert sorted(r.task_id for r in records) == sorted(e.task_id for e in answered)
    assert all(r.accepted and r.attempt == 1 and r.sent_ns >= r.received_ns for r in records)
    # A clean stop says goodbye, as the real worker does: nobody is left idle or busy.
    states = {w["state"] for w in cluster.status()["workers"]}
    assert states == {"offline"}


def test_scale_bench_drains_every_queued_task_exactly_once() -> None:
    require_mosquitto()
    parser = argparse.ArgumentParser()
    bench_scale.add_options(parser)
    args = parser.parse_args(["--workers", "20", "--processes", "2", "--tasks", "300", "--clients", "5", "--watch"])
    args.timeout = 60.0
    result = bench_scale.measure(args)

    assert result["name"] == "scale"
    assert (result["workers"], result["tasks"]) == (20, 300)
    assert result["answered"] == 300
    assert result["duplicates"] == result["refused"] == result["results_refused"] == result["retried"] == 0
    assert result["workers_registered"] == 20
    # Registration is spread over a second or so and the drain takes about as long: the last workers to
    # come may find the queue nearly empty, so only most of them are sure to get work.
    assert result["workers_used"] >= 16
    assert result["handovers"] == 300 - result["workers_used"]
    assert 0 < result["dispatch_p50_ms"] <= result["dispatch_p99_ms"] <= result["dispatch_max_ms"] < 10_000
    assert 0 < result["drain_s"] < 60
    # The figures are rounded (drain to 10 ms, rates to 0.1/s): a drain of 0.38 s is 0.375 to 0.385 s, 1.3 %.
    drain_rounding = 0.005 / result["drain_s"]
    assert result["dispatch_rate_per_s"] == pytest.approx(300 / result["drain_s"], rel=0.01 + drain_rounding)
    rate_rounding = 0.05 / result["steady_rate_per_s"]
    assert result["little_cycle_ms"] == pytest.approx(1000 * 20 / result["steady_rate_per_s"], rel=0.01 + rate_rounding)
    assert 30 < result["master_rss_idle_mb"] <= result["master_rss_mb"] < 2000
    assert result["master_cpu_s"] > 0 and result["master_cpu_ms_per_task"] > 0
    for part in ("result_to_accept", "accept_to_assign", "assign_to_receive"):
        assert result[f"{part}_p50_ms"] <= result[f"{part}_p99_ms"]
    series = result["series"]
    assert len(series["t_s"]) == len(series["queue"]) == len(series["rss_mb"]) >= 2
    assert max(q for q in series["queue"] if q is not None) >= 250  # the queue was deep before the workers came
    assert series["workers_started_s"] < series["drained_s"]
    assert isinstance(bench_scale.chart(result), Figure)
    assert "300 of 300" in bench_scale.summary(result)
