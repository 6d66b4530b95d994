"""Benchmark `journal`: what standby masters cost, one master with its SQLite journal against three on etcd behind
HAProxy, measured in turns in one run: answers per second under closed-loop clients, CPU per answer, and the
overhead of one question at a time."""

from __future__ import annotations

import argparse
import statistics
from typing import TYPE_CHECKING, Any

from lab.bench.common import figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "journal"
HELP = (
    "the cost of standby masters: one master (SQLite) against three on etcd behind HAProxy, in turns, zero work: "
    "answers/s, CPU per answer, overhead per question"
)
SHAPES = ("sqlite", "etcd")
# Averaged over a shape's runs, with the decimals kept.
FIGURES = {
    "per_s": 1,
    "p50_ms": 1,
    "p99_ms": 1,
    "system_cpu_ms_per_answer": 2,
    "overhead_p50_ms": 2,
    "overhead_p99_ms": 2,
}


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --clients, --seconds, --warmup, --questions, --rounds."""
    parser.add_argument("--workers", type=int, default=4, help="zero-work workers of each system")
    parser.add_argument("--clients", type=int, default=20, help="closed-loop clients, one question at a time each")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds of closed-loop load")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--questions", type=int, default=100, help="questions of the one-at-a-time overhead probe")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each shape, in turns (sqlite, etcd, ...)")


def measure_shape(journal: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run of one shape: the closed-loop load, then the overhead probe, on one fresh system."""
    from lab.analysis.stats import percentile
    from lab.bench.overhead import ask_one_at_a_time  # the system and Socket.IO load only when this runs
    from lab.bench.peer import Phase, closed_loop_ours
    from lab.system.presets import measurement_cluster
    from services.loop import run as run_loop

    with measurement_cluster(workers=args.workers, journal=journal) as cluster:
        groups = {p.pid for p in cluster.processes.values()}
        phase = Phase(groups, args.warmup, args.seconds, worker_ids=cluster.worker_ids)
        run_loop(closed_loop_ours(cluster.web_url, args.clients, phase))
        overheads = run_loop(ask_one_at_a_time(cluster.web_url, args.questions, warmup=10))
    figures = phase.figures()
    return {
        "per_s": figures["per_s"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "answers": figures["answers"],
        "system_cpu_ms_per_answer": figures["system_cpu_ms_per_answer"],
        "system_cpu_pct": figures["system_cpu_pct"],
        "overhead_p50_ms": round(percentile(overheads, 50), 2),
        "overhead_p99_ms": round(percentile(overheads, 99), 2),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`rounds` runs of each shape in turns; each shape's mean, and etcd's over SQLite's (in the mean and in
    each round: the machine's load drifts, the ratio of neighbours less)."""
    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {args.rounds}")
    runs: dict[str, list[dict[str, Any]]] = {shape: [] for shape in SHAPES}
    for round_ in range(1, args.rounds + 1):
        for shape in SHAPES:
            runs[shape].append({"round": round_, **measure_shape(shape, args)})
    result: dict[str, Any] = {
        "name": NAME,
        "workers": args.workers,
        "clients": args.clients,
        "seconds": args.seconds,
        "questions": args.questions,
        "rounds": args.rounds,
    }
    for shape in SHAPES:
        result |= {f"{shape}_{k}": round(statistics.fmean(r[k] for r in runs[shape]), d) for k, d in FIGURES.items()}
        result[f"{shape}_runs"] = runs[shape]
    result |= ratios(result, runs)
    return result


def ratios(result: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """etcd's figure over SQLite's, for each figure (in the means) and for answers/s in each round."""
    out: dict[str, Any] = {}
    for key in FIGURES:
        base = result[f"sqlite_{key}"]
        out[f"ratio_{key}"] = round(result[f"etcd_{key}"] / base, 2) if base else None
    pairs = zip(runs["sqlite"], runs["etcd"], strict=True)
    out["ratio_per_s_by_round"] = [round(e["per_s"] / s["per_s"], 2) if s["per_s"] else None for s, e in pairs]
    return out


def summary(result: dict[str, Any]) -> str:
    """One line per shape and the ratios."""
    lines = [
        f"journal: {result['workers']} zero-work workers, {result['clients']} closed-loop clients for "
        f"{result['seconds']:g} s, then {result['questions']} questions one at a time; {result['rounds']} rounds"
    ]
    for shape, label in (("sqlite", "one master, SQLite"), ("etcd", "3 masters on etcd + HAProxy")):
        lines.append(
            f"  {label:<28} {result[f'{shape}_per_s']} answers/s (p50 {result[f'{shape}_p50_ms']} ms, p99 "
            f"{result[f'{shape}_p99_ms']} ms), {result[f'{shape}_system_cpu_ms_per_answer']} ms CPU/answer, "
            f"overhead p50 {result[f'{shape}_overhead_p50_ms']} ms, p99 {result[f'{shape}_overhead_p99_ms']} ms"
        )
    lines.append(
        f"  etcd / sqlite: answers/s x{result['ratio_per_s']} (by round {result['ratio_per_s_by_round']}), "
        f"CPU/answer x{result['ratio_system_cpu_ms_per_answer']}, overhead p50 x{result['ratio_overhead_p50_ms']}"
    )
    return "\n".join(lines)


def chart(result: dict[str, Any]) -> Figure:
    """Bars side by side: answers/s, CPU per answer, overhead p50 and p99, for each shape."""
    fig, axes = figure(1, 3)
    panels = (
        ("answers per second", ("per_s",)),
        ("system CPU per answer (ms)", ("system_cpu_ms_per_answer",)),
        ("overhead per question (ms)", ("overhead_p50_ms", "overhead_p99_ms")),
    )
    colours = {"sqlite": "tab:blue", "etcd": "tab:orange"}
    for ax, (title, keys) in zip(axes, panels, strict=True):
        width = 0.8 / len(SHAPES)
        for i, shape in enumerate(SHAPES):
            values = [result[f"{shape}_{k}"] for k in keys]
            xs = [j + (i - 0.5) * width for j in range(len(keys))]
            ax.bar(xs, values, width, color=colours[shape], label=shape)
        ax.set_xticks(range(len(keys)), [k.replace("overhead_", "").replace("_ms", "") for k in keys])
        ax.set_title(title)
    axes[0].legend(title="journal")
    fig.suptitle("Standby masters on etcd against one master on SQLite (same run, in turns)")
    return fig
