"""The benchmarks: what a benchmark module exposes, and the list of them.

Each benchmark is a module ``lab/bench/<name>.py`` that follows `Benchmark`. Its module level stays light
(argparse and the standard library): the `lab` command imports every one to build its parser, so each
imports matplotlib, pandas, Socket.IO or the system it measures inside the functions that use them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Protocol

from lab.bench import (
    baseline,
    burst,
    connections,
    failover,
    faults,
    journal,
    languages,
    overhead,
    peer,
    registration,
    saturation,
    scale,
    soak,
    throughput,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BENCHMARKS", "Benchmark"]


class Benchmark(Protocol):
    """What a benchmark module exposes (a module satisfies it; mypy checks the list below)."""

    NAME: str
    HELP: str

    def add_options(self, parser: argparse.ArgumentParser) -> None: ...

    def measure(self, args: argparse.Namespace) -> dict[str, Any]: ...

    def summary(self, result: dict[str, Any]) -> str: ...

    def chart(self, result: dict[str, Any]) -> Figure: ...


BENCHMARKS: tuple[Benchmark, ...] = (
    overhead,
    throughput,
    burst,
    connections,
    saturation,
    registration,
    languages,
    faults,
    baseline,
    soak,
    peer,
    scale,
    journal,
    failover,
)
