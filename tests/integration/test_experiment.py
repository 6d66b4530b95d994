"""Experiments end to end: load at a real system while collecting, attached by URL or started locally, faults
played on time, and the `lab load` / `lab report` commands."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from lab.commands import load
from lab.experiment import kill_worker, run_open
from lab.loadgen import arrivals
from lab.runs import Run, list_runs
from lab.system.presets import GEMINI_LIKE_SD_MS, sessions_unlimited
from lab.system.target import AttachError, MqttAccess, Target, attach
from tests.conftest import ClusterFactory, require_mosquitto

REPO = Path(__file__).resolve().parents[2]


def test_mqtt_access_parses_a_url_and_never_shows_the_password() -> None:
    access = MqttAccess.parse("mqtt://observer:s3cr%40t@broker.local:1884")
    assert (access.host, access.port, access.login) == ("broker.local", 1884, ("observer", "s3cr@t"))
    assert "s3cr" not in repr(access)
    assert MqttAccess.parse("broker.local").port == 1883
    with pytest.raises(ValueError, match="mqtt://observer"):
        MqttAccess.parse("http://broker.local")


def test_attach_refuses_what_is_not_a_master() -> None:
    with pytest.raises(ValueError, match="http://host:8888"):
        attach("broker.local:8888")
    with pytest.raises(AttachError, match=r"127\.0\.0\.1:9/api/status"):
        attach("http://127.0.0.1:9")


def test_a_run_against_a_system_attached_by_url(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.3, extra_env=sessions_unlimited())
    target = attach(cluster.web_url, cluster.grpc_endpoint, token=cluster.operator_token)
    assert isinstance(target, Target) and target.mqtt is None
    schedule = arrivals.constant(4, 3.0)
    run = run_open(target, schedule, label="attached", users=3, duration_s=3.0, progress=False)
    assert run.params["workers"] == 2
    assert run.params["load"]["answered"] == len(schedule)
    assert (run.tasks["outcome"] == "answered").sum() == len(schedule)
    assert run.tasks["delivered"].notna().all()
    # Without the broker's address only the master's view of the workers is there.
    assert set(run.worker_events["source"]) == {"grpc"}


def test_a_worker_killed_on_time_during_load_loses_nothing(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=3, work_seconds=1.0, extra_env=sessions_unlimited())
    first = cluster.worker_ids[0]
    schedule = arrivals.constant(3, 6.0)
    run = run_open(cluster, schedule, label="fault", users=4, faults=[kill_worker(cluster, 2.0)], progress=False)
    (fault,) = run.params["faults"]
    assert (fault["action"], fault["target"]) == ("kill worker", first)
    assert "error" not in fault
    assert run.params["load"]["answered"] == len(schedule)
    assert run.params["load"]["duplicates"] == 0
    offline = run.worker_events.query("worker_id == @first and state == 'offline'")
    assert not offline.empty
    assert offline["timestamp"].min() >= fault["timestamp"]


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def test_lab_load_saves_a_run_and_lab_report_shows_it(tmp_path: Path) -> None:
    require_mosquitto()
    runs = tmp_path / "runs"
    done = lab(
        "load",
        "--workers",
        "2",
        "--work-seconds",
        "0.3",
        "--model-latency-ms",
        "50",
        "--rate",
        "3",
        "--duration",
        "4",
        "--users",
        "3",
        "--label",
        "cli",
        "--runs-dir",
        str(runs),
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    (folder,) = list_runs(runs)
    run = Run.load(folder)
    assert run.params["arrival"] == "poisson" and run.params["workers"] == 2
    assert (run.tasks["outcome"] == "answered").sum() == run.params["load"]["sent"] > 0
    assert f"KPIs of run {run.run_id}" in done.stdout
    assert "mean wait in queue: measured" in done.stdout
    assert {p.name for p in (folder / "charts").glob("*.png")} >= {"throughput.png", "latency_cdf.png"}

    report = lab("report", folder.name[:12], "--runs-dir", str(runs), "--no-charts")
    assert report.returncode == 0, report.stderr
    assert f"KPIs of run {run.run_id}" in report.stdout
    listing = lab("report", "--runs-dir", str(runs))
    assert listing.stdout.split() == [run.run_id]
    missing = lab("report", "no-such-run", "--runs-dir", str(runs))
    assert missing.returncode == 2
    assert "no run 'no-such-run'" in missing.stderr


def test_lab_load_explains_bad_arguments(tmp_path: Path) -> None:
    done = lab("load", "--arrival", "replay", "--rate", "1", "--runs-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--replay CSV" in done.stderr
    done = lab("load", "--workers", "0", "--runs-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--workers must name at least 1 worker" in done.stderr
    done = lab("load", "--workers", "python=1,cobol=2", "--runs-dir", str(tmp_path))
    assert done.returncode == 2
    assert "unknown worker language 'cobol'" in done.stderr
    done = lab("load", "--model-latency-ms", "0", "--model-latency-sd-ms", "5", "--runs-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--model-latency-sd-ms needs a mean" in done.stderr
    assert not list_runs(tmp_path)


def test_a_model_without_latency_gets_no_spread_unless_given() -> None:
    parser = argparse.ArgumentParser()
    load.register(parser.add_subparsers())
    assert load.model_sd_ms(parser.parse_args(["load", "--model-latency-ms", "0"])) == 0.0
    assert load.model_sd_ms(parser.parse_args(["load"])) == GEMINI_LIKE_SD_MS
    assert load.model_sd_ms(parser.parse_args(["load", "--model-latency-sd-ms", "30"])) == 30.0
