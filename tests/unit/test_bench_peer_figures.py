"""The peer benchmark's summary, chart and CPU accounting, without running either system."""

from __future__ import annotations

import os
import time
from typing import Any

from matplotlib.figure import Figure

from lab.bench import peer as bench_peer


def _result() -> dict[str, Any]:
    side = {
        "per_s": 100.0,
        "p50_ms": 20.0,
        "p99_ms": 80.0,
        "client_cpu_pct": 30.0,
        "system_cpu_pct": 120.0,
        "machine_cpu_pct": 190.0,
        "client_cpu_ms_per_answer": 3.0,
        "system_cpu_ms_per_answer": 12.0,
    }
    figures = {
        f"{prefix}_{k}": v * (2 if prefix == "celery" else 1) for prefix in ("ours", "celery") for k, v in side.items()
    }
    return {
        "name": "peer",
        "workers": 4,
        "clients": 50,
        "seconds": 20.0,
        "celery_pool": "solo",
        "ratio": 0.5,
        **figures,
    }


def test_summary_names_both_systems_and_the_ratio() -> None:
    text = bench_peer.summary(_result())
    assert "ours 100.0 answers/s" in text and "Celery (solo pool, Redis in memory) 200.0 answers/s" in text
    assert "ours/Celery = 0.5" in text


def test_chart_has_throughput_and_latency_axes() -> None:
    figure = bench_peer.chart(_result())
    assert isinstance(figure, Figure)
    assert [ax.get_title() for ax in figure.axes] == ["Throughput (4 workers, 50 clients)", "Latency"]


def test_cpu_of_a_process_group_is_counted() -> None:
    group = os.getpgid(0)
    before = bench_peer.group_cpu_s({group})
    busy_until = time.process_time() + 0.1
    while time.process_time() < busy_until:
        pass
    assert bench_peer.group_cpu_s({group}) - before >= 0.05
    assert bench_peer.group_cpu_s({-1}) == 0
    assert bench_peer.machine_cpu_s() > 0
