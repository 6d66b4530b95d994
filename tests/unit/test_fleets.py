"""Fleets of workers in any mix of languages: how `--workers` and `ClusterSpec.workers` are read, and how a
worker of each language is started."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from lab.commands.fleet import add_workers_option
from lab.system.spec import ClusterSpec
from lab.system.workers import (
    LANGUAGES,
    WorkerUnavailableError,
    fleet_size,
    fleet_text,
    parse_fleet,
    spawn_order,
    worker_kind,
)
from services.protocol.worker_ids import worker_language


@pytest.mark.parametrize(
    ("spec", "fleet"),
    [
        (4, (("python", 4),)),
        ("4", (("python", 4),)),
        (0, ()),
        ("python=2,go=2,java=2", (("python", 2), ("go", 2), ("java", 2))),
        ("java=1, python=3", (("python", 3), ("java", 1))),  # listed in LANGUAGES order whatever the input's
        ("go:2", (("go", 2),)),
        ("go=1,go=2", (("go", 3),)),
        ("python=0,go=1", (("go", 1),)),
        ({"java": 2, "go": 1}, (("go", 1), ("java", 2))),
        ((("java", 2), ("go", 1)), (("go", 1), ("java", 2))),  # a fleet already read, as argparse gives it
    ],
)
def test_a_fleet_is_read_from_a_number_a_text_or_a_mapping(spec: object, fleet: tuple[tuple[str, int], ...]) -> None:
    assert parse_fleet(spec) == fleet  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rust=2", "unknown worker language 'rust'"),
        ("python=two", "language=count pairs"),
        ("python=2;go=1", "language=count pairs"),
        ("", "language=count pairs"),
        (-1, "must be >= 0"),
        ({"go": -2}, "must be >= 0"),
        (True, "a number or language=count pairs"),
    ],
)
def test_a_bad_fleet_is_refused_with_what_is_wrong(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fleet(spec)  # type: ignore[arg-type]


def test_a_cluster_spec_refuses_a_bad_fleet_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unknown worker language"):
        ClusterSpec(workers="cobol=1")
    assert ClusterSpec(workers=3).fleet == (("python", 3),)
    assert ClusterSpec(workers="go=1,python=1").fleet == (("python", 1), ("go", 1))


def test_a_mixed_fleet_starts_every_language_early_and_in_the_right_numbers() -> None:
    fleet = parse_fleet("python=3,go=1,java=2")
    order = spawn_order(fleet)
    assert order == ["python", "go", "java", "python", "java", "python"]
    assert fleet_size(fleet) == len(order) == 6
    assert fleet_text(fleet) == "3 python + 1 go + 2 java"
    assert fleet_text(()) == "no workers"


def test_the_workers_option_parses_a_fleet_and_explains_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="lab up")
    add_workers_option(parser, default=2)
    assert parser.parse_args([]).workers == (("python", 2),)
    assert parser.parse_args(["--workers", "go=2,java=2"]).workers == (("go", 2), ("java", 2))
    with pytest.raises(SystemExit):
        parser.parse_args(["--workers", "go=2,perl=1"])
    assert "unknown worker language 'perl'" in capsys.readouterr().err


def test_each_language_has_a_command_and_ids_that_name_it() -> None:
    env: dict[str, str] = {}
    assert worker_kind("python", env).command("--check") == [sys.executable, "-m", "services.worker", "--check"]
    for language in LANGUAGES:
        kind = worker_kind(language, env)
        assert worker_language(kind.new_id()) == language
        assert kind.new_id() != kind.new_id()
    assert worker_kind("go", env).command()[0].endswith("services/worker-go/bin/worker-go")
    assert worker_kind("java", env).command()[0].endswith("services/worker-java/worker-java")
    with pytest.raises(ValueError, match="unknown worker language 'c'"):
        worker_kind("c", env)


def test_a_worker_that_is_not_built_says_how_to_build_it(tmp_path: Path) -> None:
    kind = worker_kind("go", {})
    missing = type(kind)("go", (str(tmp_path / "worker-go"),), needs=tmp_path / "worker-go")
    assert "make workers" in (missing.problem() or "")
    with pytest.raises(WorkerUnavailableError, match=r"the go worker is not built .*make workers"):
        missing.require()
    (tmp_path / "worker-go").write_text("")
    assert missing.problem() is None
    assert worker_kind("python", {}).problem() is None


def test_a_command_from_the_environment_replaces_the_built_one() -> None:
    kind = worker_kind("go", {"LAB_WORKER_GO": "/opt/worker-go --verbose 'a b'"})
    assert kind.command("--check") == ["/opt/worker-go", "--verbose", "a b", "--check"]
    assert kind.problem() is None  # the user's command is trusted; a wrong one fails when it starts
