"""The `lab` command: one argparse subcommand per job (up, load, report, bench, swarm).

Building the parser imports each command's module, and those import only what their options need; what a
command runs (pandas, matplotlib, Socket.IO, gRPC, MQTT) is imported when it runs, so `lab --help` is fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lab.commands import bench, load, report, swarm, up


def build_parser() -> argparse.ArgumentParser:
    """The `lab` argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="lab", description="Run and measure the Swarm AI Lab system locally.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each subcommand module adds its parser and sets `run` (args -> exit code) as the default.
    up.register(commands)
    load.register(commands)
    report.register(commands)
    bench.register(commands)
    swarm.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lab` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
