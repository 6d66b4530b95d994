"""The benchmarks by worker language through `lab bench ... --json --out DIR`, tiny, with Python and Go
workers: `languages`, `registration --language go`, `throughput --workers python=1,go=1`, and the error
that names `make workers` for a worker that is not built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab import cli
from lab.bench.language_figures import unavailable
from tests.conftest import require, require_mosquitto

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _go_built() -> None:
    require_mosquitto()
    reason = unavailable("go")
    require("the Go worker", reason is None, reason or "")


def _bench(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str], stem: str) -> tuple[dict[str, Any], str]:
    assert cli.main(["bench", *argv, "--json", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    figures = json.loads(stdout.rstrip("\n").splitlines()[-1])
    assert figures == json.loads((out / f"{stem}.json").read_text())
    assert (out / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
    return figures, stdout


def test_languages_compares_python_and_go_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--languages", "python,go", "--repeats", "2", "--clients", "4", "--seconds", "2", "--warmup", "1"]
    options += ["--per-language", "2", "--questions", "12", "--work-seconds", "0.1"]
    figures, stdout = _bench(["languages", *options], tmp_path, capsys, "languages")
    assert figures["languages"] == ["python", "go"] and figures["skipped"] == {}
    for language in ("python", "go"):
        start = figures["startup"][language]
        assert len(start["first_task_ms"]) == 2 and 0 < start["start_to_first_task_ms"] < 30_000
        steady = figures["steady"]["by_language"][language]
        assert steady["workers"] == 1 and steady["answers"] > 0
        assert 0 < steady["cpu_ms_per_task"] < 100 and steady["rss_mib"] > 1
        assert figures["mixed"]["processing"][language]["n"] >= 1
    assert set(figures["targets"]) == {"go"}
    mixed = figures["mixed"]
    assert mixed["fleet"] == "python=2,go=2"
    assert mixed["answered"] == 12 and mixed["duplicates"] == 0 and mixed["exactly_once"] is True
    assert len(mixed["tasks_per_worker"]) == 4 and sum(mixed["tasks_per_worker"].values()) == 12
    assert all(ms >= 100 for f in mixed["processing"].values() for ms in f["values_ms"])
    assert "python: start to first task p50" in stdout and "go: start to first task p50" in stdout


def test_registration_of_go_workers_and_throughput_of_a_mixed_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures, stdout = _bench(
        ["registration", "--repeats", "2", "--language", "go"], tmp_path, capsys, "registration-go"
    )
    assert figures["language"] == "go" and len(figures["steps_ms"]) == 2
    assert 0 < figures["start_to_first_task_ms"] < 10_000
    assert "2 go workers started" in stdout
    options = ["--workers", "python=1,go=1", "--clients", "4", "--seconds", "2", "--warmup", "0.5"]
    figures, stdout = _bench(["throughput", *options], tmp_path, capsys, "throughput-2w-python1-go1")
    assert figures["workers"] == 2 and figures["fleet"] == "python=1,go=1"
    by_language = figures["by_language"]
    assert set(by_language) == {"python", "go"}
    assert sum(f["answers"] for f in by_language.values()) == figures["answers"]
    assert all(f["cpu_ms_per_task"] > 0 and f["rss_mib"] > 1 for f in by_language.values())
    assert "go workers (1):" in stdout


def test_a_worker_that_is_not_built_is_an_error_naming_make_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_WORKER_JAVA", str(tmp_path / "no-such-worker-java"))
    assert cli.main(["bench", "registration", "--language", "java", "--out", str(tmp_path)]) == 2
    assert "make workers" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
