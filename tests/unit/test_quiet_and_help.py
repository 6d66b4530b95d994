"""`lab up` says what matters unless asked for everything, and `lab --help` shows only defaults that help."""

from __future__ import annotations

import argparse

import pytest

from lab.cli import HelpFormatter, build_parser, parsers
from lab.commands.up import Presence, _Printer
from services.protocol import StatusReport, validate


def _helps() -> dict[str, str]:
    """Every parser's help with its lines joined (a default may be wrapped onto the next line)."""
    return {p.prog: " ".join(p.format_help().split()) for p in parsers(build_parser())}


def test_no_flag_says_its_destinations_default() -> None:
    helps = _helps()
    assert {"lab up", "lab load", "lab report", "lab bench scale", "lab swarm local up"} <= set(helps)
    for prog, text in helps.items():
        # `--no-restart ... (default: True)` reads as "not restarting is the default": the opposite of the truth.
        assert "(default: True)" not in text, prog
        assert "(default: False)" not in text, prog
        assert "(default: None)" not in text, prog
        assert "(('python'" not in text, prog  # a fleet as parsed, after the help said it as given


def test_every_option_says_its_default_at_most_once() -> None:
    for p in parsers(build_parser()):
        formatter = p._get_formatter()
        for action in p._actions:
            text = formatter._get_help_string(action) or ""
            assert text.count("(default:") <= 1, f"{p.prog} {action.option_strings}: {text}"


def test_valued_options_still_show_their_defaults() -> None:
    helps = _helps()
    assert "--work-seconds S simulated long work per task (default: 10.0)" in helps["lab up"]
    assert "(default: 2)" in helps["lab up"]  # --workers, as the help gives it
    assert "--no-restart do not restart a process that dies" in helps["lab up"]
    assert "(default: --no-watch)" in helps["lab bench scale"]  # a --x/--no-x pair names the one in effect
    assert "--no-charts save no PNG charts" in helps["lab load"]


def test_the_formatter_applies_to_every_parser_that_asked_for_defaults() -> None:
    for p in parsers(build_parser()):
        assert not (
            isinstance(p.formatter_class, type)
            and issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
            and not issubclass(p.formatter_class, HelpFormatter)
        ), p.prog


def test_lab_up_is_quiet_unless_verbose() -> None:
    assert build_parser().parse_args(["up"]).verbose is False
    assert build_parser().parse_args(["up", "--verbose"]).verbose is True
    assert build_parser().parse_args(["up", "-v"]).verbose is True


INFO = "2026-12-07 01:00:00,123 INFO services.master.service: task 1a2b3c4d ok by python-worker-aa in 200 ms"
ERROR = "2026-12-07 01:00:00,456 ERROR services.master.__main__: grpc stopped: boom"


def test_quiet_printer_shows_only_errors_of_the_processes(capsys: pytest.CaptureFixture[str]) -> None:
    out = _Printer(9, verbose=False)
    out("master", INFO)
    out("master", ERROR)
    out("master", "Traceback (most recent call last):")  # a logged exception's lines go with it
    out("master", "ValueError: boom")
    out("master", "INFO:     Shutting down")  # uvicorn's own format: a new record, not shown
    out("worker-1", "Traceback (most recent call last):")  # an exception nobody logged
    out("worker-1", "RuntimeError: dying")
    out("worker-2", "plain text")
    restarted = "lab up: restarted worker-1 (exited with code 1) as worker-3 (python-worker-bb)"
    out.say(restarted)
    assert capsys.readouterr().out.splitlines() == [
        f"master    | {ERROR}",
        "master    | Traceback (most recent call last):",
        "master    | ValueError: boom",
        "worker-1  | Traceback (most recent call last):",
        "worker-1  | RuntimeError: dying",
        restarted,
    ]


def test_verbose_printer_shows_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    out = _Printer(9, verbose=True)
    out("master", INFO)
    out("worker-1", "plain text from a Go worker")
    assert capsys.readouterr().out.splitlines() == [f"master    | {INFO}", "worker-1  | plain text from a Go worker"]


def _status(**states: str) -> StatusReport:
    """The master's status with these workers (worker id -> state)."""
    workers = [
        {"worker_id": worker_id, "language": worker_id.split("-")[0], "state": state, "tasks_done": 0}
        | {"tasks_failed": 0, "current_task": None, "last_seen": 0}
        for worker_id, state in states.items()
    ]
    counts = {s: sum(1 for w in workers if w["state"] == s) for s in ("idle", "busy", "offline")}
    body = {"workers": workers, **counts, "queue_length": 0, "in_flight": 0, "undelivered": 0}
    return validate(StatusReport, body | {"mqtt_connected": True})


def test_presence_says_who_joined_and_who_left() -> None:
    presence = Presence()
    assert presence.update(_status(**{"python-worker-a": "idle", "go-worker-b": "busy"})) == [
        "lab up: worker python-worker-a (python) joined (1 worker online)",
        "lab up: worker go-worker-b (go) joined (2 workers online)",
    ]
    assert presence.update(_status(**{"python-worker-a": "busy", "go-worker-b": "idle"})) == []
    assert presence.update(_status(**{"python-worker-a": "offline", "go-worker-b": "lost"})) == [
        "lab up: worker python-worker-a left (1 worker online)"
    ]
    # A master that restarted knows nobody until they register again: nobody left for that.
    assert presence.update(_status()) == []
    assert presence.update(_status(**{"go-worker-b": "idle", "python-worker-c": "idle"})) == [
        "lab up: worker python-worker-c (python) joined (2 workers online)"
    ]
