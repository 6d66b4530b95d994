"""The `lab` command: one argparse subcommand per job (up, load, report, bench, swarm).

Building the parser imports each command's module, and those import only what their options need; what a
command runs (pandas, matplotlib, Socket.IO, gRPC, MQTT) is imported when it runs, so `lab --help` is fast.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence

from lab.commands import bench, load, report, swarm, up

_SAYS_DEFAULT = re.compile(r"\bdefault\b", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, where one helps: not for a flag (`--no-charts` is off unless given,
    whatever `charts` defaults to), not for None, and not when the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if isinstance(action, argparse.BooleanOptionalAction):
            # Python 3.11 appends "(default: %(default)s)" itself: name the flag that is in effect instead.
            text = text.replace(" (default: %(default)s)", "")
            if action.default in (True, False):
                text += f" (default: {action.option_strings[0 if action.default else 1]})"
            return text
        if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or _SAYS_DEFAULT.search(text):
            return text
        return super()._get_help_string(action)


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """`parser` and every subcommand's parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


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
    # The commands ask for their defaults in the help; one formatter decides for all which are worth showing.
    for each in parsers(parser):
        formatter = each.formatter_class
        if isinstance(formatter, type) and issubclass(formatter, argparse.ArgumentDefaultsHelpFormatter):
            each.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lab` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
