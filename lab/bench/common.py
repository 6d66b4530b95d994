"""What the benchmarks share: counting per second and the small pieces their charts have in common (the
system they measure is `lab.system.measurement_cluster`, the machine `lab.runs.machine`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from services.protocol.worker_ids import SEPARATOR

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def per_second(times_s: Sequence[float], until_s: float | None = None) -> list[int]:
    """How many of `times_s` (seconds from a start) fall in each whole second 0, 1, ... up to `until_s`
    (default: the last time); negative times are left out."""
    end = max([*times_s, 0.0] if until_s is None else [until_s])
    counts = [0] * (math.floor(end) + 1)
    for t in times_s:
        if 0 <= t <= end:
            counts[math.floor(t)] += 1
    return counts


def figure(rows: int = 1, columns: int = 1, height: float = 4.5) -> tuple[Figure, list[Axes]]:
    """A Figure (object API, no pyplot state) with rows x columns axes, row by row."""
    from matplotlib.figure import Figure  # here: the `lab` command imports every benchmark to build its parser

    fig = Figure(figsize=(9, height), layout="constrained")
    axes = [fig.add_subplot(rows, columns, i + 1) for i in range(rows * columns)]
    return fig, axes


def tasks_per_worker_bars(ax: Axes, per_worker: Mapping[str, int]) -> None:
    """Bars of how many tasks each worker did, labelled with the worker id's end."""
    names = list(per_worker)
    ax.bar(range(len(names)), [per_worker[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), [n.rpartition(SEPARATOR)[2] for n in names], rotation=30, fontsize="small")
    ax.set_ylabel("tasks")
    ax.set_title("Tasks per worker")


def add_journal_option(parser: argparse.ArgumentParser) -> None:
    """--journal: which shape of our system to measure."""
    parser.add_argument(
        "--journal",
        choices=("sqlite", "etcd"),
        default="sqlite",
        help="sqlite: one master; etcd: three standby masters on a three-member etcd cluster behind HAProxy (the "
        "highly available shape: its cost)",
    )
