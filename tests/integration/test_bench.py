"""Each benchmark through `lab bench NAME --json --out DIR` with tiny parameters: a summary for people, the
figures as one JSON object on the last line, and the same figures and a chart in DIR."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import cli
from tests.conftest import require_mosquitto

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]


def _check_output(stdout: str, out: Path, stem: str) -> dict[str, Any]:
    """The last line is the JSON record that was saved; the PNG is a PNG; a summary came before."""
    lines = stdout.rstrip("\n").splitlines()
    figures: dict[str, Any] = json.loads(lines[-1])
    assert figures == json.loads((out / f"{stem}.json").read_text())
    assert figures["machine"]["cpus"] >= 1 and figures["measured_at"]
    assert (out / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
    assert len(lines) >= 3  # summary lines and where the files went, before the JSON
    return figures


def _bench(name: str, options: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    require_mosquitto()
    assert cli.main(["bench", name, *options, "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_overhead_through_the_lab_command_prints_its_json_last(tmp_path: Path) -> None:
    require_mosquitto()
    argv = [sys.executable, "-m", "lab.cli", "bench", "overhead", "--questions", "20", "--warmup", "2"]
    done = subprocess.run(
        [*argv, "--json", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = _check_output(done.stdout, tmp_path, "overhead")
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"] < 1000
    assert len(figures["overheads_ms"]) == figures["questions"] == 20
    assert "p50" in done.stdout and "overhead" in done.stdout


def test_saturation_keeps_the_workers_busy_and_spreads_the_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--workers", "2", "--work-seconds", "0.2", "--seconds", "4", "--users", "10"]
    stdout, _ = _bench("saturation", options, tmp_path, capsys)
    figures = _check_output(stdout, tmp_path, "saturation-2w")
    assert figures["sent"] == figures["answered"] == 80 and figures["unanswered"] == 0
    assert figures["capacity_per_s"] == 10 and figures["offered_per_s"] == 20
    assert 0.5 <= figures["efficiency"] <= 1.05
    assert figures["max_min_ratio"] >= 1 and sum(figures["tasks_per_worker"].values()) == 80
    assert "efficiency" in stdout and "first assignment to last answer" in stdout


def test_registration_times_each_step_of_a_new_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdout, _ = _bench("registration", ["--repeats", "2"], tmp_path, capsys)
    figures = _check_output(stdout, tmp_path, "registration")
    assert 0 < figures["start_to_first_task_ms"] <= figures["start_to_first_task_max_ms"] < 30_000
    assert 0 <= figures["connect_to_assignable_ms"] < 5_000
    assert len(figures["steps_ms"]) == 2
    assert "process start to first task" in stdout


def test_throughput_and_burst(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--workers", "2", "--clients", "5", "--seconds", "2", "--warmup", "0.5"]
    stdout, _ = _bench("throughput", options, tmp_path, capsys)
    figures = _check_output(stdout, tmp_path, "throughput-2w")
    assert figures["answers_per_s"] > 5 and sum(figures["answers_per_second"]) == figures["answers"]
    cpu = figures["cpu_ms_per_answer"]
    assert set(cpu) == {"master", "mosquitto", "workers", "clients", "total"}
    assert cpu["master"] > 0 and cpu["workers"] > 0 and cpu["clients"] > 0  # each does work for every answer
    assert cpu["total"] == pytest.approx(sum(v for k, v in cpu.items() if k != "total"), abs=0.05)
    assert "CPU per answer (ms): master" in stdout
    stdout, _ = _bench("burst", ["--workers", "2", "--questions", "6", "--work-seconds", "0.2"], tmp_path, capsys)
    figures = _check_output(stdout, tmp_path, "burst-2w")
    assert figures["answered"] == 6 and figures["duplicates"] == 0
    assert figures["tasks_per_worker_min"] >= 1 and figures["elapsed_s"] >= figures["ideal_s"]


def test_soak_and_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--workers", "2", "--work-seconds", "0.2", "--seconds", "2", "--warmup", "1", "--clients", "4"]
    stdout, _ = _bench("soak", options, tmp_path, capsys)
    figures = _check_output(stdout, tmp_path, "soak")
    assert figures["answered"] == figures["accepted"] > 0 and figures["master_rss_end_mb"] > 0
    options = ["--workers", "3", "--work-seconds", "0.2", "--questions", "40", "--clients", "4"]
    options += ["--every", "1", "--master-at", "2", "--broker-at", "3.5", "--stopped-for", "2"]
    stdout, _ = _bench("faults", options, tmp_path, capsys)
    figures = _check_output(stdout, tmp_path, "faults")
    assert figures["answered"] == 40 and figures["distinct_answers_differ"] == 0
    assert {"master-SIGKILL", "broker-restart"} <= set(figures["faults"])
    assert len(figures["fault_at_s"]) == len(figures["faults"])
