"""`lab bench connections` with tiny parameters: the idle users connect and the master holds them, its memory
grows with them, and every phase has its active users' latencies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import cli
from tests.conftest import require_mosquitto

IDLE = 200


def test_idle_users_are_held_by_the_master_and_each_phase_is_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_mosquitto()
    options = ["--idle", str(IDLE), "--active", "3", "--seconds", "2", "--warmup", "0.5"]
    assert cli.main(["bench", "connections", *options, "--json", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.rstrip("\n").splitlines()[-1])
    assert (tmp_path / "connections-2w.png").is_file()

    # Every idle user joined, and the master holds a socket for each.
    assert figures["idle_connected"] == IDLE and not figures["idle_failure"]
    assert figures["master_sockets_added"] >= IDLE
    # They cost the master memory, and the figure per user is that growth divided among them.
    assert figures["master_rss_idle_mib"] > figures["master_rss_before_mib"] > 0
    assert figures["kib_per_idle_user"] == pytest.approx(1024 * figures["master_rss_added_mib"] / IDLE, rel=0.05)
    assert figures["idle_client_rss_mib"] > 0
    # Each phase: answers, ordered percentiles, the master's CPU; the ratio of B's p99 to A's.
    assert set(figures["phases"]) == {"A", "B", "C"}
    for phase in figures["phases"].values():
        assert phase["answers_per_s"] > 0 and phase["latencies_ms"]
        assert 0 < phase["p50_ms"] <= phase["p99_ms"] <= phase["max_ms"]
        assert phase["master_cpu_percent"] > 0
    a, b = figures["phases"]["A"], figures["phases"]["B"]
    assert figures["p99_ratio"] == pytest.approx(b["p99_ms"] / a["p99_ms"], abs=0.01)
    assert "KiB per idle user" in out and "p99 with idle users / without" in out
