"""`lab bench peer`: ours and Celery with Redis do the same zero-work job in one run, each on its own workers,
in alternating rounds."""

from __future__ import annotations

import argparse
import json
import os

import pytest
from matplotlib.figure import Figure

from lab.bench import peer as bench_peer
from lab.bench.peer_system import celery_system, find_redis
from tests.conftest import require, require_mosquitto

pytestmark = pytest.mark.integration

KEYS = (
    "name",
    "workers",
    "clients",
    "seconds",
    "ours_per_s",
    "celery_per_s",
    "ratio",
    "ours_p50_ms",
    "ours_p99_ms",
    "celery_p50_ms",
    "celery_p99_ms",
    "ours_client_cpu_pct",
    "celery_client_cpu_pct",
    "rounds",
    "ratios",
    "ours_runs",
    "celery_runs",
)
RUN_KEYS = ("round", "started_s", "per_s", "p50_ms", "p99_ms", "answers", "system_cpu_pct", "worker_ids")


def test_peer_runs_the_same_job_through_ours_and_celery() -> None:
    require_mosquitto()
    require("redis-server", find_redis() is not None, "run `sudo apt-get install redis-server`")
    parser = argparse.ArgumentParser()
    bench_peer.add_options(parser)
    # Two short rounds: the alternation and the combined figures are what this checks, not the rates.
    argv = ["--workers", "2", "--clients", "4", "--seconds", "2", "--warmup", "0.5", "--rounds", "2"]
    args = parser.parse_args(argv)

    result = bench_peer.measure(args)

    assert json.loads(json.dumps(result)) == result
    assert set(KEYS) <= set(result)
    assert (result["name"], result["workers"], result["clients"], result["seconds"]) == ("peer", 2, 4, 2.0)
    assert result["rounds"] == 2
    assert result["ours_per_s"] > 0 and result["celery_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["ours_per_s"] / result["celery_per_s"], rel=0.01)
    assert len(result["ratios"]) == 2
    # Ours, Celery, ours, Celery: each run started after the one before it.
    runs = [result[f"{side}_runs"][i] for i in range(2) for side in ("ours", "celery")]
    assert [r["round"] for r in runs] == [1, 1, 2, 2]
    assert [r["started_s"] for r in runs] == sorted(r["started_s"] for r in runs)
    assert runs[0]["started_s"] < runs[1]["started_s"] < runs[2]["started_s"] < runs[3]["started_s"]
    for side in ("ours", "celery"):
        side_runs = result[f"{side}_runs"]
        assert all(set(RUN_KEYS) <= set(r) for r in side_runs)
        # The headline is the mean of the runs; the answers are their sum.
        mean = sum(r["per_s"] for r in side_runs) / 2
        assert result[f"{side}_per_s"] == pytest.approx(mean, abs=0.06)
        assert result[f"{side}_answers"] == sum(r["answers"] for r in side_runs)
        for run in side_runs:
            assert run["per_s"] > 0
            assert 0 < run["p50_ms"] <= run["p99_ms"]
            # Every task ran on one of the run's workers, and with 4 clients both workers had some.
            assert set(run["tasks_by_worker"]) == set(run["worker_ids"])
            assert len(run["worker_ids"]) == 2
        assert set(result[f"{side}_tasks_by_worker"]) == set(result[f"{side}_worker_ids"])
    # Celery's tasks report the pid of the process that ran them: the pool's, never this (client) process.
    assert str(os.getpid()) not in result["celery_tasks_by_worker"]

    figure = bench_peer.chart(result)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert len(figure.axes[0].patches) == 4  # a bar for each run
    text = bench_peer.summary(result)
    assert "Celery" in text and "2 rounds" in text and "runs: " in text


def test_peer_leaves_no_process_behind() -> None:
    require("redis-server", find_redis() is not None, "run `sudo apt-get install redis-server`")
    with pytest.raises(RuntimeError, match="on purpose"), celery_system(workers=2) as system:
        pids = [int(pid) for pid in system.pool_pids] + list(system.groups)
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
        raise RuntimeError("on purpose")
    assert not [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
