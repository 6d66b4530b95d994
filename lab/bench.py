"""`lab bench NAME`: run one benchmark module, write its figures (JSON) and chart (PNG) under data/bench/, print
its summary and, with `--json`, the figures as one JSON object on the last line of stdout.

Each benchmark is a module `lab/bench_<name>.py` that follows `Benchmark`; this module only wires them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Protocol

from matplotlib.figure import Figure

from lab import (
    bench_burst,
    bench_faults,
    bench_overhead,
    bench_peer,
    bench_registration,
    bench_saturation,
    bench_scale,
    bench_soak,
    bench_throughput,
)
from lab.measure import machine

BENCH_DIR = Path(__file__).resolve().parents[1] / "data" / "bench"
CHART_DPI = 110


class Benchmark(Protocol):
    """What a benchmark module exposes (a module satisfies it; mypy checks the list below)."""

    NAME: str
    HELP: str

    def add_options(self, parser: argparse.ArgumentParser) -> None: ...

    def measure(self, args: argparse.Namespace) -> dict[str, Any]: ...

    def summary(self, result: dict[str, Any]) -> str: ...

    def chart(self, result: dict[str, Any]) -> Figure: ...


BENCHMARKS: tuple[Benchmark, ...] = (
    bench_overhead,
    bench_throughput,
    bench_burst,
    bench_saturation,
    bench_registration,
    bench_faults,
    bench_soak,
    bench_peer,
    bench_scale,
)


def file_stem(result: dict[str, Any]) -> str:
    """The name of a result's files: the benchmark's name, with `-<N>w` when it says how many workers."""
    suffix = f"-{result['workers']}w" if "workers" in result else ""
    return f"{result['name']}{suffix}"


def record(result: dict[str, Any]) -> dict[str, Any]:
    """A benchmark's figures with the machine they were measured on and when (UTC)."""
    return {**result, "machine": machine(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def save(result: dict[str, Any], directory: Path = BENCH_DIR, figure: Figure | None = None) -> Path:
    """Write one benchmark's figures as `<stem>.json` (with `record`'s additions) and, given a figure, the
    chart as `<stem>.png` next to it; return the JSON file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{file_stem(result)}.json"
    path.write_text(json.dumps(record(result), indent=2) + "\n")
    if figure is not None:
        figure.savefig(path.with_suffix(".png"), dpi=CHART_DPI)
    return path


def register(commands: Any) -> None:
    """Add `bench` to the `lab` parser's subcommands, with one sub-subcommand per benchmark module."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="measure the system; figures and charts go to data/bench/",
        description="Start a system of its own on free ports, measure, print a summary, and write the figures "
        "(NAME[-Nw].json) and a chart (.png) to --out.",
    )
    names = parser.add_subparsers(dest="benchmark", required=True, metavar="NAME")
    for module in BENCHMARKS:
        sub = names.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_options(sub)
        sub.add_argument("--out", type=Path, default=BENCH_DIR, help="directory of the JSON and PNG files")
        sub.add_argument("--json", action="store_true", help="print the figures as one JSON object, last")
        sub.set_defaults(run=_run, module=module)


def _run(args: argparse.Namespace) -> int:
    module: Benchmark = args.module
    result = module.measure(args)
    path = save(result, args.out, module.chart(result))
    print(module.summary(result))
    print(f"saved {path} and {path.with_suffix('.png').name}", flush=True)
    if args.json:
        print(json.dumps(json.loads(path.read_text())), flush=True)  # exactly what was written, on one line
    return 0
