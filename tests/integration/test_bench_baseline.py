"""`lab bench baseline`, tiny: every case runs against a real baseline-mode system and its figures say which
mechanism noticed the fault (the broker's log at once, a lease sized by the tasks seen, or the setting)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import cli
from tests.conftest import require_mosquitto

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEASE = 8.0


def test_bench_baseline_times_each_fault_to_its_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_mosquitto()
    options = ["--repeats", "1", "--reference", "1", "--work-seconds", "0.5", "--fault-after", "0.2"]
    options += ["--lease-seconds", str(LEASE)]
    assert cli.main(["bench", "baseline", *options, "--json", "--out", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.rstrip("\n").splitlines()[-1])
    assert figures == json.loads((tmp_path / "baseline.json").read_text())
    assert (tmp_path / "baseline.png").read_bytes().startswith(PNG_MAGIC)
    assert {k: len(v) for k, v in figures["raw"].items()} == {
        "killed mid-task": 1,
        "killed idle": 1,
        "hung mid-task": 1,
        "hung, first task": 1,
    }
    # Killed: the broker's log; hung after a task: a lease of about 1.5 tasks (at least 2 s more); hung on
    # its first task: the lease setting, as every fault cost before.
    assert figures["killed_mid-task"]["fault_to_reassigned_s"]["max"] < 2
    # Asked at once after the kill, the question may reach the master before the broker's word: then it
    # goes to the dead worker and comes back within milliseconds.
    assert figures["killed_idle"]["extra_wait_s"]["max"] < 2
    assert figures["hung_mid-task"]["fault_to_reassigned_s"]["max"] < LEASE / 2
    assert figures["hung_first_task"]["fault_to_reassigned_s"]["max"] > LEASE / 2
    for case in ("killed_mid-task", "hung_mid-task", "hung_first_task"):
        moved, answered = figures[case]["fault_to_reassigned_s"]["p50"], figures[case]["fault_to_answer_s"]["p50"]
        assert 0 <= moved < answered, case
