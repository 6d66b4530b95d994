"""Benchmark `failover`: standby masters on three network namespaces as nodes (lab.system.nodes.HaNodes), each
scenario of lab.bench.failover_scenarios in turn under a steady load through the proxy: how soon questions are
accepted again, how soon everything accepted before the fault is answered, lost, duplicates, and acknowledgements
from an old leader after its lease. Needs root (network namespaces), etcd-server, haproxy and mosquitto."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.bench.common import figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "failover"
HELP = (
    "standby masters on three network namespaces as nodes: a node crashed, partitioned or paused under load; "
    "seconds until questions are accepted again, lost, duplicates (root needed)"
)
DEFAULT_SCENARIOS = (
    "leader-node",
    "etcd-leader-node",
    "standby-node",
    "partition-leader",
    "pause-leader",
    "rotating",
)


def add_options(parser: argparse.ArgumentParser) -> None:
    """--scenarios, --rate, --work-seconds."""
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, in order; of {', '.join(DEFAULT_SCENARIOS)}",
    )
    parser.add_argument("--rate", type=float, default=2.0, help="questions per second through the proxy")
    parser.add_argument("--work-seconds", type=float, default=0.5, help="each worker's simulated work")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario in turn on one set of three nodes; the figures of each."""
    from dataclasses import asdict

    from lab.bench.failover_scenarios import SCENARIOS, run_failover
    from lab.system.nodes import HaNodes

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}: choose from {', '.join(SCENARIOS)}")
    with (
        tempfile.TemporaryDirectory(prefix="lab-failover-") as tmp,
        HaNodes(Path(tmp), work_seconds=args.work_seconds) as nodes,
    ):
        results = [run_failover(nodes, scenario, args.rate) for scenario in scenarios]
    return {
        "name": NAME,
        "rate_per_s": args.rate,
        "work_seconds": args.work_seconds,
        "scenarios": [asdict(r) for r in results],
    }


def summary(result: dict[str, Any]) -> str:
    """One line per scenario."""
    lines = [f"failover at {result['rate_per_s']:g} questions/s through the proxy (three namespaces as nodes):"]
    for r in result["scenarios"]:
        old = "-" if r.get("old_leader_acks") is None else r["old_leader_acks"]
        again, answered = _s(r["accepted_again_s"]), _s(r["all_answered_s"])
        lines.append(
            f"  {r['scenario']:<18} accepted again {again}, all answered {answered}; "
            f"accepted {r['accepted']}, lost {r['lost']}, duplicates {r['duplicates']}, old-leader acks {old}"
        )
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def chart(result: dict[str, Any]) -> Figure:
    """Seconds until questions were accepted again and until everything open was answered, per scenario."""
    fig, (ax,) = figure(1, 1)
    rows = result["scenarios"]
    names = [r["scenario"] for r in rows]
    width = 0.4
    for offset, key, colour, label in (
        (-width / 2, "accepted_again_s", "tab:red", "accepted again"),
        (width / 2, "all_answered_s", "tab:green", "everything open answered"),
    ):
        values = [r[key] if r[key] is not None else 0.0 for r in rows]
        ax.bar([i + offset for i in range(len(rows))], values, width, color=colour, label=label)
    ax.axhline(10.0, color="tab:gray", linestyle="--", label="target: accepted again within 10 s")
    ax.set_xticks(range(len(rows)), names, rotation=20)
    ax.set_ylabel("seconds after the fault")
    ax.set_title("Failover of standby masters, by scenario")
    ax.legend()
    return fig
