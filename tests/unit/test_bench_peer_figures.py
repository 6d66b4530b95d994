"""The peer benchmark's summary, chart and CPU accounting, without running either system."""

from __future__ import annotations

import os
import time
from typing import Any

from matplotlib.figure import Figure

from lab.bench import peer as bench_peer
from lab.bench import peer_figures


def _result() -> dict[str, Any]:
    """A result saved before there were rounds: one run of each side, no `_runs` lists."""
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


def _run(round_: int, per_s: float, p99_ms: float, workers: tuple[str, ...] = ("w1", "w2")) -> dict[str, Any]:
    """The figures of one run of one side, as Phase.figures gives them."""
    return {
        "round": round_,
        "started_s": 30.0 * round_,
        "per_s": per_s,
        "p50_ms": p99_ms / 4,
        "p99_ms": p99_ms,
        "answers": int(per_s * 20),
        "client_cpu_pct": 30.0,
        "system_cpu_pct": 120.0 + round_,
        "machine_cpu_pct": 190.0,
        "client_cpu_ms_per_answer": 3.0,
        "system_cpu_ms_per_answer": 12.0,
        "worker_ids": list(workers),
        "tasks_by_worker": {w: int(per_s * 10) for w in workers},
    }


def _two_rounds() -> dict[str, Any]:
    """A result of two rounds: ours at 100 and 120 answers/s, Celery at 200 and 180."""
    ours = [_run(1, 100.0, 80.0, ("a1", "a2")), _run(2, 120.0, 60.0, ("b1", "b2"))]
    celery = [_run(1, 200.0, 160.0, ("11", "12")), _run(2, 180.0, 140.0, ("21", "22"))]
    result: dict[str, Any] = {
        "name": "peer",
        "workers": 2,
        "clients": 50,
        "seconds": 20.0,
        "rounds": 2,
        "celery_pool": "solo",
        **peer_figures.side_figures("ours", ours),
        **peer_figures.side_figures("celery", celery),
    }
    result.update(peer_figures.ratios(result))
    return result


def test_a_side_headline_is_the_mean_of_its_runs() -> None:
    result = _two_rounds()
    assert (result["ours_per_s"], result["ours_p99_ms"], result["ours_system_cpu_pct"]) == (110.0, 70.0, 121.5)
    assert (result["celery_per_s"], result["celery_p99_ms"]) == (190.0, 150.0)
    assert result["ours_answers"] == 2000 + 2400
    # Each run of ours had a cluster of its own: the workers of both, and the tasks of both summed.
    assert result["ours_worker_ids"] == ["a1", "a2", "b1", "b2"]
    assert sum(result["ours_tasks_by_worker"].values()) == 2 * 1000 + 2 * 1200
    assert result["ratio"] == round(110 / 190, 3)
    assert result["ratios"] == [0.5, round(120 / 180, 3)]
    assert result["ours_per_s_spread_pct"] == round(100 * 20 / 110, 1)
    assert [r["per_s"] for r in result["ours_runs"]] == [100.0, 120.0]


def test_summary_says_both_runs_of_each_side() -> None:
    text = bench_peer.summary(_two_rounds())
    assert "2 rounds alternating ours and Celery" in text and "mean of the rounds" in text
    assert "ours 110.0 answers/s" in text and "runs: 100.0 / 120.0 answers/s" in text
    assert "runs: 200.0 / 180.0 answers/s" in text and "p99 160.0 / 140.0 ms" in text
    assert f"ours/Celery = {round(110 / 190, 3)} (rounds: 0.5 / {round(120 / 180, 3)})" in text


def test_chart_has_a_bar_for_every_run() -> None:
    figure = bench_peer.chart(_two_rounds())
    rate, latency = figure.axes
    assert [ax.get_title() for ax in figure.axes] == ["Throughput (2 workers, 50 clients)", "Latency"]
    assert len(rate.patches) == 4  # two runs of each side
    assert len(latency.patches) == 8  # p50 and p99 of each of those runs
    legend = latency.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [
        "ours, run 1",
        "ours, run 2",
        "Celery+Redis, run 1",
        "Celery+Redis, run 2",
    ]


def test_summary_names_both_systems_and_the_ratio() -> None:
    text = bench_peer.summary(_result())
    assert "ours 100.0 answers/s" in text and "Celery (solo pool, Redis in memory) 200.0 answers/s" in text
    assert "ours/Celery = 0.5" in text


def test_chart_has_throughput_and_latency_axes() -> None:
    figure = bench_peer.chart(_result())
    assert isinstance(figure, Figure)
    assert [ax.get_title() for ax in figure.axes] == ["Throughput (4 workers, 50 clients)", "Latency"]
    assert len(figure.axes[0].patches) == 2  # a result without rounds: one bar a side


def test_cpu_of_a_process_group_is_counted() -> None:
    group = os.getpgid(0)
    before = bench_peer.group_cpu_s({group})
    busy_until = time.process_time() + 0.1
    while time.process_time() < busy_until:
        pass
    assert bench_peer.group_cpu_s({group}) - before >= 0.05
    assert bench_peer.group_cpu_s({-1}) == 0
    assert bench_peer.machine_cpu_s() > 0
