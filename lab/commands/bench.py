"""`lab bench NAME`: run one benchmark module, write its figures (JSON) and chart (PNG) under data/bench/, print
its summary and, with `--json`, the figures as one JSON object on the last line of stdout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lab.bench.files import save
from lab.bench.suite import BENCHMARKS, Benchmark
from lab.commands.fleet import add_workers_option
from lab.paths import BENCH_DIR
from lab.system.workers import WorkerUnavailableError

__all__ = ["register"]


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, unless the help already says it (--workers: a fleet's default
    reads better as given than as parsed)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default: " in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def register(commands: Any) -> None:
    """Add `bench` to the `lab` parser's subcommands, with one sub-subcommand per benchmark module."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="measure the system; figures and charts go to data/bench/",
        description="Start a system of its own on free ports, measure, print a summary, and write the figures "
        "(NAME[-Nw][-LANGUAGE].json) and a chart (.png) to --out.",
    )
    names = parser.add_subparsers(dest="benchmark", required=True, metavar="NAME")
    for module in BENCHMARKS:
        sub = names.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            formatter_class=_DefaultsFormatter,
        )
        if (workers := getattr(module, "WORKERS", None)) is not None:
            add_workers_option(sub, workers)  # a fleet of any languages: --workers python=2,go=2
        module.add_options(sub)
        sub.add_argument("--out", type=Path, default=BENCH_DIR, help="directory of the JSON and PNG files")
        sub.add_argument("--json", action="store_true", help="print the figures as one JSON object, last")
        sub.set_defaults(run=_run, module=module)


def _run(args: argparse.Namespace) -> int:
    module: Benchmark = args.module
    try:
        result = module.measure(args)
    except WorkerUnavailableError as error:  # a Go or Java worker that is not built: how to build it
        print(f"lab bench {module.NAME}: {error}", file=sys.stderr)
        return 2
    path = save(result, args.out, module.chart(result))
    print(module.summary(result))
    print(f"saved {path} and {path.with_suffix('.png').name}", flush=True)
    if args.json:
        print(json.dumps(json.loads(path.read_text())), flush=True)  # exactly what was written, on one line
    return 0
