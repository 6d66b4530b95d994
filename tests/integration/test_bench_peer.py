"""`lab bench peer`: ours and Celery with Redis do the same zero-work job in one run, each on its own workers."""

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
)


def test_peer_runs_the_same_job_through_ours_and_celery() -> None:
    require_mosquitto()
    require("redis-server", find_redis() is not None, "run `sudo apt-get install redis-server`")
    parser = argparse.ArgumentParser()
    bench_peer.add_options(parser)
    args = parser.parse_args(["--workers", "2", "--clients", "4", "--seconds", "3", "--warmup", "1"])

    result = bench_peer.measure(args)

    assert json.loads(json.dumps(result)) == result
    assert set(KEYS) <= set(result)
    assert (result["name"], result["workers"], result["clients"], result["seconds"]) == ("peer", 2, 4, 3.0)
    assert result["ours_per_s"] > 0 and result["celery_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["ours_per_s"] / result["celery_per_s"], rel=0.01)
    for side in ("ours", "celery"):
        assert 0 < result[f"{side}_p50_ms"] <= result[f"{side}_p99_ms"]
        # Every task ran on one of the side's workers, and with 4 clients both workers had some.
        assert set(result[f"{side}_tasks_by_worker"]) == set(result[f"{side}_worker_ids"])
        assert len(result[f"{side}_worker_ids"]) == 2
    # Celery's tasks report the pid of the process that ran them: the pool's, never this (client) process.
    assert str(os.getpid()) not in result["celery_tasks_by_worker"]

    figure = bench_peer.chart(result)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert "Celery" in bench_peer.summary(result)


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
