"""What the benchmarks work out by worker language, without I/O: which languages can run here, CPU per task,
whether a mixed fleet answered every question exactly once and spread the tasks evenly, and the start-up
targets."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.analysis.stats import percentile
from lab.system.workers import LANGUAGES, Fleet, FleetSpec, parse_fleet, worker_kind
from services.protocol.worker_ids import worker_language

__all__ = [
    "START_TARGET_MS",
    "as_fleet",
    "available_languages",
    "cpu_ms_per_task",
    "evenness",
    "exactly_once",
    "fleet_label",
    "language_counts",
    "language_of",
    "median",
    "parse_languages",
    "processing_by_language",
    "start_targets",
    "steady_figures",
    "unavailable",
]

START_TARGET_MS = {"go": 50.0, "java": 600.0}
"""Worker process start to its first task, median: the targets of the languages that have one."""


def language_of(worker_id: str) -> str:
    """The language a worker id names (`go-worker-3f9a1c`: go), `unknown` for another id."""
    return worker_language(worker_id) or "unknown"


def as_fleet(spec: FleetSpec | Fleet) -> Fleet:
    """A fleet from what a `--workers` option or a caller gives: a number, text, a mapping or a fleet."""
    if isinstance(spec, tuple):
        return parse_fleet(dict(spec))
    return parse_fleet(spec)


def fleet_label(fleet: Fleet) -> str:
    """`python=2,go=2`: the fleet as `--workers` takes it."""
    return ",".join(f"{language}={count}" for language, count in fleet)


def parse_languages(text: str) -> list[str]:
    """`python,go,java` as a list in LANGUAGES order; ValueError for an unknown or no language."""
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(LANGUAGES))
    if unknown or not wanted:
        raise ValueError(f"languages are some of {','.join(LANGUAGES)}; got {text!r}")
    return [language for language in LANGUAGES if language in wanted]


def unavailable(language: str) -> str | None:
    """Why workers of `language` cannot start here (not built, or their launcher is missing), or None."""
    kind = worker_kind(language)
    if (problem := kind.problem()) is not None:
        return problem
    program = kind.command()[0]
    if not (Path(program).exists() or shutil.which(program)):
        return f"the {language} worker's launcher {program} is missing: run `make workers`"
    return None


def available_languages(languages: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The languages that can run here, and for the others why not."""
    ok: list[str] = []
    skipped: dict[str, str] = {}
    for language in languages:
        if (reason := unavailable(language)) is None:
            ok.append(language)
        else:
            skipped[language] = reason
    return ok, skipped


def language_counts(worker_ids: Iterable[str]) -> dict[str, int]:
    """How many of `worker_ids` (one per task answered, say) each language has, in LANGUAGES order."""
    counts = Counter(language_of(w) for w in worker_ids)
    order = [*LANGUAGES, *sorted(set(counts) - set(LANGUAGES))]
    return {language: counts[language] for language in order if counts[language]}


def cpu_ms_per_task(cpu_s: Mapping[str, float], tasks: Mapping[str, int]) -> dict[str, float]:
    """CPU ms per task of each language: its workers' CPU seconds over the tasks they did (NaN for none)."""
    return {
        language: round(1000 * spent / tasks[language], 3) if tasks.get(language) else float("nan")
        for language, spent in cpu_s.items()
    }


def evenness(per_worker: Mapping[str, int]) -> dict[str, Any]:
    """How evenly tasks were spread: min, max, their difference (`spread`) and whether it is at most 1."""
    counts = list(per_worker.values())
    low, high = (min(counts), max(counts)) if counts else (0, 0)
    return {"min": low, "max": high, "spread": high - low, "even": high - low <= 1}


def exactly_once(answers_per_task: Mapping[str, int], questions: int) -> dict[str, Any]:
    """Whether each of `questions` got exactly one answer: answered, missing, duplicates and the verdict."""
    answered = sum(1 for n in answers_per_task.values() if n >= 1)
    duplicates = sum(n - 1 for n in answers_per_task.values() if n > 1)
    missing = questions - answered
    return {
        "answered": answered,
        "missing": missing,
        "duplicates": duplicates,
        "exactly_once": not (missing or duplicates),
    }


def processing_by_language(answers: Iterable[tuple[str, float]]) -> dict[str, dict[str, Any]]:
    """(worker id, processing ms) of each answer -> per language: n, p50, p95, max and the values."""
    values: dict[str, list[float]] = {}
    for worker_id, ms in answers:
        values.setdefault(language_of(worker_id), []).append(float(ms))
    return {
        language: {
            "n": len(v),
            "p50_ms": round(percentile(v, 50), 2),
            "p95_ms": round(percentile(v, 95), 2),
            "max_ms": round(max(v), 2),
            "values_ms": v,
        }
        for language, v in sorted(values.items(), key=lambda item: _order(item[0]))
    }


def _order(language: str) -> tuple[int, str]:
    return (LANGUAGES.index(language) if language in LANGUAGES else len(LANGUAGES), language)


def start_targets(start_ms: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """The start-up target of each measured language that has one: target, median measured and met."""
    return {
        language: {"target_ms": target, "measured_ms": start_ms[language], "met": start_ms[language] <= target}
        for language, target in START_TARGET_MS.items()
        if language in start_ms
    }


def median(values: Sequence[float]) -> float:
    """The median (NaN for none)."""
    return percentile(list(values), 50)


def steady_figures(
    cpu_s: Mapping[str, float],
    answers: Mapping[str, int],
    rss_mib: Mapping[str, float],
    languages: Mapping[str, str],
) -> dict[str, dict[str, Any]]:
    """Per language, from one measured window: its workers, the tasks they answered, their CPU ms per task
    (`cpu_s` by language over `answers` by language) and their mean and max RSS (MiB) at the window's end
    (`rss_mib` and `languages` by worker process name)."""
    per_task = cpu_ms_per_task(cpu_s, answers)
    figures: dict[str, dict[str, Any]] = {}
    for language in sorted({*languages.values()}, key=_order):
        rss = [mib for name, mib in rss_mib.items() if languages.get(name) == language and mib > 0]
        figures[language] = {
            "workers": sum(1 for lang in languages.values() if lang == language),
            "answers": answers.get(language, 0),
            "cpu_s": round(cpu_s.get(language, 0.0), 3),
            "cpu_ms_per_task": per_task.get(language, float("nan")),
            "rss_mib": round(sum(rss) / len(rss), 1) if rss else float("nan"),
            "rss_max_mib": round(max(rss), 1) if rss else float("nan"),
        }
    return figures
