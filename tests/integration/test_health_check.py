"""`python -m services.master --check` and `python -m services.worker --check`, the containers' health checks,
run as processes against a real Mosquitto, master and workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT
from lab.system.local import LocalCluster
from lab.system.ports import free_port
from services.health import HEARTBEAT_SECONDS, STALE_AFTER_BEATS, Heartbeat, Unhealthy, check_worker
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.integration

SECRET = "pa55-never-printed"


def run_check(service: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `python -m services.<service> --check` the way the image's HEALTHCHECK does."""
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}", "--check"],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=15,
    )


def check_until(service: str, env: Mapping[str, str], code: int, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the check until it exits with `code`; fail with its last output after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done = run_check(service, env)
        if done.returncode == code:
            return done
        if time.monotonic() > deadline:
            raise AssertionError(f"{service} --check never exited {code} within {timeout} s; last: {done}")
        time.sleep(0.2)


def master_env(cluster: LocalCluster) -> dict[str, str]:
    """The environment the cluster's master runs with (the check reads the same settings)."""
    return cluster.config.master_env(os.environ)


def health_env(path: Path) -> dict[str, str]:
    return {"HEALTH_FILE": str(path)}


# -- master ---------------------------------------------------------------------------------------------


def test_master_check_passes_while_the_master_serves_and_fails_while_it_hangs(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=0, restart=False)
    env = master_env(cluster)
    healthy = run_check("master", env)
    assert healthy.returncode == 0, healthy
    assert "connected to MQTT" in healthy.stdout and healthy.stderr == ""

    cluster.kill_master(signal.SIGSTOP)  # the port still accepts connections, nobody answers
    try:
        started = time.monotonic()
        hung = run_check("master", env)
        elapsed = time.monotonic() - started
    finally:
        cluster.kill_master(signal.SIGCONT)
    assert hung.returncode == 1, hung
    assert "no answer within" in hung.stderr
    assert elapsed < 4.5, f"the check must end before Swarm's 5 s timeout, took {elapsed:.1f} s"
    assert run_check("master", env).returncode == 0


def test_master_check_fails_clearly_when_nothing_listens() -> None:
    port = free_port()
    started = time.monotonic()
    done = run_check("master", {"WEB_HOST": "0.0.0.0", "WEB_PORT": str(port), "MQTT_PASSWORD": SECRET})
    assert done.returncode == 1, done
    assert done.stderr.strip() == f"unhealthy: nothing listens on 127.0.0.1:{port}: the master is not running"
    assert SECRET not in done.stdout + done.stderr
    assert time.monotonic() - started < 3


def test_master_check_fails_while_the_broker_is_down_and_recovers(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=0, restart=False)
    env = master_env(cluster)
    assert run_check("master", env).returncode == 0

    cluster.kill_broker(signal.SIGKILL)
    down = check_until("master", env, 1, timeout=10)
    assert "not connected to the MQTT broker" in down.stderr, down
    assert "503" in down.stderr

    cluster.restart_broker()
    check_until("master", env, 0, timeout=15)


def test_master_check_with_a_bad_setting_is_unhealthy_not_docker_reserved_2() -> None:
    done = run_check("master", {"WEB_PORT": "eighty"})
    assert done.returncode == 1 and "WEB_PORT" in done.stderr, done


# -- worker ---------------------------------------------------------------------------------------------


def test_worker_check_passes_while_connected_and_fails_while_the_broker_is_down(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(workers=0, restart=False)
    health = tmp_path / "worker.health"
    worker_id = cluster.add_worker(env=health_env(health))
    up = check_until("worker", health_env(health), 0, timeout=3 * HEARTBEAT_SECONDS)
    assert f"worker {worker_id} is connected" in up.stdout

    cluster.kill_broker(signal.SIGKILL)
    down = check_until("worker", health_env(health), 1, timeout=3 * HEARTBEAT_SECONDS)
    assert f"worker {worker_id} is not connected to the MQTT broker" in down.stderr, down

    cluster.restart_broker()
    check_until("worker", health_env(health), 0, timeout=15)


def test_worker_check_fails_once_the_worker_is_killed_or_stopped(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(workers=0, restart=False)
    killed_file, stopped_file = tmp_path / "killed.health", tmp_path / "stopped.health"
    killed = cluster.add_worker(env=health_env(killed_file))
    stopped = cluster.add_worker(env=health_env(stopped_file))
    # Two workers on one host, each with its own file.
    for worker_id, path in ((killed, killed_file), (stopped, stopped_file)):
        up = check_until("worker", health_env(path), 0, timeout=3 * HEARTBEAT_SECONDS)
        assert f"worker {worker_id} is connected" in up.stdout

    cluster.kill_worker(killed, signal.SIGKILL)  # no goodbye: its last heartbeat stays and goes stale
    cluster.stop_worker(stopped)  # a clean stop removes the file
    assert not stopped_file.exists()
    gone = run_check("worker", health_env(stopped_file))
    assert gone.returncode == 1 and "no heartbeat file" in gone.stderr, gone

    assert killed_file.exists()
    stale = check_until("worker", health_env(killed_file), 1, timeout=(STALE_AFTER_BEATS + 1.5) * HEARTBEAT_SECONDS)
    assert f"worker {killed}: last heartbeat" in stale.stderr and "gone or hung" in stale.stderr, stale


# -- the heartbeat file ------------------------------------------------------------------------------------


def test_heartbeat_is_replaced_atomically_and_closing_removes_it_for_good(tmp_path: Path) -> None:
    path = tmp_path / "w.health"
    beat = Heartbeat(str(path), "python-worker-abc123", lambda: True)
    beat.write(True)
    assert json.loads(path.read_text())["connected"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["w.health"]  # no temporary file left behind
    beat.close()
    beat.write(True)  # a write still in flight when the worker stops must not bring the file back
    assert not path.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "is not a worker's heartbeat"),
        ('{"worker_id": "w", "connected": true}', "is not a worker's heartbeat"),
        ('{"worker_id": "w", "connected": true, "time": 1000.0}', "gone or hung"),
        ('{"worker_id": "w", "connected": true, "time": 1e12}', "gone or hung"),  # a clock set back
        ('{"worker_id": "w", "connected": "yes", "time": %s}', "not connected"),
    ],
)
def test_worker_check_refuses_a_stale_or_strange_heartbeat(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "w.health"
    path.write_text(content.replace("%s", str(time.time())))
    with pytest.raises(Unhealthy, match=reason):
        check_worker(str(path))
