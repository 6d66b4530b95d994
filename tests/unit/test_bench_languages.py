"""The figures by worker language of `lab bench languages`, `registration --language` and `throughput
--workers FLEET`, on inputs whose answers are known by hand."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from lab.bench import file_stem
from lab.bench import languages as bench_languages
from lab.bench.language_figures import (
    as_fleet,
    available_languages,
    cpu_ms_per_task,
    evenness,
    exactly_once,
    fleet_label,
    language_counts,
    parse_languages,
    processing_by_language,
    start_targets,
    steady_figures,
    unavailable,
)
from lab.bench.procfs import group_cpu_seconds, group_rss_mib
from lab.cli import build_parser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_languages_are_parsed_in_the_fleet_order() -> None:
    assert parse_languages("java, go") == ["go", "java"]
    assert parse_languages("python,go,java,go") == ["python", "go", "java"]
    for bad in ("", "rust", "go,cobol"):
        with pytest.raises(ValueError):
            parse_languages(bad)


def test_fleets_from_options_and_their_labels() -> None:
    assert as_fleet(4) == (("python", 4),)
    assert as_fleet((("go", 2), ("python", 1))) == (("python", 1), ("go", 2))
    assert fleet_label(as_fleet("go=2,python=2")) == "python=2,go=2"


def test_lab_bench_parses_a_fleet_and_a_language() -> None:
    args = build_parser().parse_args(["bench", "throughput", "--workers", "python=2,go=2"])
    assert args.workers == (("python", 2), ("go", 2))
    assert build_parser().parse_args(["bench", "throughput"]).workers == (("python", 4),)
    assert build_parser().parse_args(["bench", "registration", "--language", "go"]).language == "go"
    args = build_parser().parse_args(["bench", "languages", "--languages", "go,python"])
    assert args.languages == ["python", "go"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "registration", "--language", "rust"])


def test_file_names_keep_languages_and_fleets_apart() -> None:
    assert file_stem({"name": "registration"}) == "registration"
    assert file_stem({"name": "registration", "language": "python"}) == "registration"
    assert file_stem({"name": "registration", "language": "go"}) == "registration-go"
    assert file_stem({"name": "throughput", "workers": 4, "fleet_counts": {"python": 4}}) == "throughput-4w"
    assert file_stem({"name": "throughput", "workers": 4, "fleet_counts": {"go": 4}}) == "throughput-4w-go"
    mixed = {"name": "throughput", "workers": 4, "fleet_counts": {"python": 2, "go": 2}}
    assert file_stem(mixed) == "throughput-4w-python2-go2"
    assert file_stem({"name": "languages", "languages": ["python", "go"]}) == "languages"


def test_cpu_per_task_divides_each_language_s_cpu_by_its_tasks() -> None:
    per_task = cpu_ms_per_task({"python": 0.74, "go": 0.26, "java": 0.5}, {"python": 1000, "go": 1000})
    assert per_task["python"] == pytest.approx(0.74) and per_task["go"] == pytest.approx(0.26)
    assert math.isnan(per_task["java"])  # no task answered: no figure, not infinity


def test_steady_figures_by_language() -> None:
    languages = {"worker-1": "python", "worker-2": "go", "worker-3": "go"}
    rss = {"worker-1": 55.0, "worker-2": 20.0, "worker-3": 22.0}
    figures = steady_figures({"python": 0.5, "go": 0.4}, {"python": 500, "go": 1000}, rss, languages)
    assert list(figures) == ["python", "go"]
    assert figures["go"]["workers"] == 2 and figures["go"]["answers"] == 1000
    assert figures["go"]["cpu_ms_per_task"] == pytest.approx(0.4)
    assert figures["go"]["rss_mib"] == 21.0 and figures["go"]["rss_max_mib"] == 22.0
    assert figures["python"]["cpu_ms_per_task"] == pytest.approx(1.0)


def test_evenness_and_exactly_once() -> None:
    assert evenness({"a": 10, "b": 11, "c": 10}) == {"min": 10, "max": 11, "spread": 1, "even": True}
    assert evenness({"a": 1, "b": 7})["even"] is False
    assert evenness({})["even"] is True
    assert exactly_once({"t1": 1, "t2": 1}, 2)["exactly_once"] is True
    twice = exactly_once({"t1": 2, "t2": 1}, 3)
    assert twice == {"answered": 2, "missing": 1, "duplicates": 1, "exactly_once": False}


def test_processing_times_and_counts_by_the_worker_id_s_language() -> None:
    answers = [("go-worker-a1", 100.0), ("go-worker-a2", 104.0), ("python-worker-b1", 110.0), ("odd", 1.0)]
    figures = processing_by_language(answers)
    assert list(figures) == ["python", "go", "unknown"]
    assert figures["go"]["n"] == 2 and figures["go"]["p50_ms"] == 102.0 and figures["go"]["max_ms"] == 104.0
    assert language_counts(["java-worker-1", "go-worker-2", "go-worker-3"]) == {"go": 2, "java": 1}


def test_start_up_targets_for_go_and_java_only() -> None:
    targets = start_targets({"python": 400.0, "go": 23.0, "java": 650.0})
    assert set(targets) == {"go", "java"}
    assert targets["go"] == {"target_ms": 50.0, "measured_ms": 23.0, "met": True}
    assert targets["java"]["met"] is False


def test_an_unbuilt_or_missing_worker_is_skipped_with_how_to_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_WORKER_JAVA", "/nonexistent/worker-java")
    monkeypatch.setenv("LAB_WORKER_GO", sys.executable)
    ok, skipped = available_languages(["python", "go", "java"])
    assert ok == ["python", "go"]
    assert "make workers" in skipped["java"] and unavailable("python") is None


def test_process_group_cpu_and_memory_of_this_process() -> None:
    group = os.getpgid(0)
    assert group_rss_mib(group) > 10  # this interpreter with pandas and matplotlib loaded
    assert group_cpu_seconds(group) > 0
    assert group_cpu_seconds(2**22 + 12345) == 0 and group_rss_mib(2**22 + 12345) == 0


def result() -> dict[str, Any]:
    step = {"start_to_connect_ms": 5.0, "connect_to_assignable_ms": 2.0, "assignable_to_first_task_ms": 1.0}
    return {
        "name": "languages",
        "languages": ["python", "go"],
        "skipped": {"java": "the java worker is not built: run `make workers`"},
        "repeats": 2,
        "startup": {
            "python": {**step, "start_to_first_task_ms": 240.0, "start_to_connect_ms": 236.0},
            "go": {**step, "start_to_first_task_ms": 8.0},
        },
        "targets": start_targets({"go": 8.0}),
        "steady": {
            "clients": 2,
            "seconds": 1.0,
            "warmup": 0.5,
            "by_language": steady_figures(
                {"python": 0.2, "go": 0.1},
                {"python": 100, "go": 200},
                {"worker-1": 55.0, "worker-2": 20.0},
                {"worker-1": "python", "worker-2": "go"},
            ),
        },
        "mixed": {
            "fleet": "python=1,go=1",
            "questions": 4,
            "work_seconds": 0.1,
            **exactly_once({"a": 1, "b": 1, "c": 1, "d": 1}, 4),
            "tasks_per_worker": {"python-worker-1": 2, "go-worker-2": 2},
            "evenness": evenness({"python-worker-1": 2, "go-worker-2": 2}),
            "processing": processing_by_language(
                [("python-worker-1", 101.0), ("python-worker-1", 103.0), ("go-worker-2", 100.0), ("go-worker-2", 100.5)]
            ),
        },
    }


def test_summary_and_chart_of_the_languages_benchmark(tmp_path: Path) -> None:
    text = bench_languages.summary(result())
    assert "skipped java" in text and "make workers" in text
    assert "go: start to first task p50 8.0 ms (target <= 50 ms: met)" in text
    assert "CPU 0.5 ms per task (200 tasks)" in text
    assert "4 answered, 0 missing, 0 duplicates (exactly once); tasks per worker 2 to 2 (even" in text
    figure = bench_languages.chart(result())
    assert isinstance(figure, Figure) and len(figure.axes) == 4
    figure.savefig(tmp_path / "languages.png")
    assert (tmp_path / "languages.png").read_bytes().startswith(PNG_MAGIC)
