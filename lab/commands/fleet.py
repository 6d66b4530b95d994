"""The `--workers` option of the commands that start a system: a number (Python) or a mix of languages."""

from __future__ import annotations

import argparse

from lab.system.workers import Fleet, fleet_size, parse_fleet

__all__ = ["add_workers_option", "fleet_arg", "workers_count"]


def fleet_arg(text: str) -> Fleet:
    """argparse type: `4` or `python=2,go=2,java=2`, with the parser's message on nonsense."""
    try:
        fleet = parse_fleet(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return fleet


def add_workers_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: int) -> None:
    """Add `--workers FLEET` with `default` Python workers."""
    parser.add_argument(
        "--workers",
        type=fleet_arg,
        default=parse_fleet(default),
        metavar="FLEET",
        help=f"workers to start: a number of Python workers, or language=count pairs such as "
        f"python=2,go=2,java=2 (Go and Java are built by `make workers`) (default: {default})",
    )


def workers_count(fleet: Fleet) -> int:
    """How many workers `fleet` has."""
    return fleet_size(fleet)
