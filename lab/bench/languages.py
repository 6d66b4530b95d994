"""Benchmark `languages`: the worker languages side by side, in one run.

For each language asked for (`--languages python,go,java`; one that is not built here is skipped with a note):

- start-up: `--repeats` workers started one at a time with a question waiting (as `registration`, the
  languages interleaved in one system): process start to MQTT connect, to assignable, to first task;
- steady load: one worker of each language, `WORK_SECONDS=0` and the offline model answering at once,
  closed-loop clients for `--seconds` after `--warmup`: CPU ms per task of each language's workers (user +
  system of the whole process group, over the tasks they answered in the window) and their RSS at its end;
- a mixed fleet: `--per-language` workers of each language, `--questions` asked at once with
  `--work-seconds` of work each (after `--warm-questions` that are not counted): every question answered
  exactly once, the tasks per worker (even when they differ by at most 1: the master gives the next task to
  the longest-idle worker, so a language that turns a task around faster may get more), and
  processing_time_ms by language.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from lab.bench import registration
from lab.bench.language_figures import (
    available_languages,
    evenness,
    exactly_once,
    fleet_label,
    median,
    parse_languages,
    processing_by_language,
    start_targets,
    steady_figures,
)
from lab.bench.procfs import worker_languages
from lab.bench.throughput import measured_window
from lab.loadgen.client import ChatClient
from lab.system.presets import measurement_cluster
from lab.system.workers import LANGUAGES, WorkerUnavailableError, parse_fleet
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NAME = "languages"
HELP = "Python, Go and Java workers side by side: start-up, CPU per task, RSS, processing time, a mixed fleet"


def _languages(text: str) -> list[str]:
    try:
        return parse_languages(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_options(parser: argparse.ArgumentParser) -> None:
    """--languages, --repeats, --clients, --seconds, --warmup, --per-language, --questions, --work-seconds."""
    parser.add_argument("--languages", type=_languages, default=list(LANGUAGES), help="comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="workers started one at a time, per language")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients of the steady load")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window of the steady load")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of steady load before the window")
    parser.add_argument("--per-language", type=int, default=2, help="workers of each language in the mixed fleet")
    parser.add_argument("--questions", type=int, default=60, help="questions asked at once of the mixed fleet")
    parser.add_argument("--work-seconds", type=float, default=0.1, help="simulated work per task, mixed fleet")
    parser.add_argument(
        "--warm-questions",
        type=int,
        default=None,
        help="questions the mixed fleet answers before the measured ones, not counted (default: 2 per worker, so "
        "that every worker has its gRPC result stream open; a JVM's first result takes ~0.5 s)",
    )


def _startup(languages: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """Per language: the `registration` figures of `repeats` starts, and each start's ms to first task."""
    plan = [language for _ in range(repeats) for language in languages]  # interleaved: drift hits all alike
    starts = registration.timed_starts(plan)
    figures: dict[str, dict[str, Any]] = {}
    for language in languages:
        times = [t for lang, t in starts if lang == language]
        figures[language] = {
            **registration.breakdown(times),
            "first_task_ms": [t["first_task"] - t["spawned"] for t in times],
        }
    return figures


def _steady(languages: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """One worker of each language under closed-loop load with zero work: CPU per task and RSS by language."""
    with measurement_cluster(workers=dict.fromkeys(languages, 1), restart=False) as cluster:
        pids = {name: proc.pid for name, proc in cluster.processes.items()}
        by_name = worker_languages(cluster.processes)
        closed = measured_window(cluster.web_url, args.clients, args.seconds, args.warmup, pids, by_name)
        counted = run_loop(closed)
    return steady_figures(counted.cpu_by_language_s, counted.answers_by_language, counted.rss_mib, by_name)


async def _ask_all(url: str, questions: int, clients: int) -> list[tuple[str, str, float]]:
    """`questions` asked at once by up to `clients` users; (task id, worker id, processing ms) of every answer."""
    users = [ChatClient(url) for _ in range(max(1, min(clients, questions)))]
    shares = [len(range(i, questions, len(users))) for i in range(len(users))]
    try:
        await asyncio.gather(*(u.connect() for u in users))
        await asyncio.gather(*(_ask(u, i, n) for i, (u, n) in enumerate(zip(users, shares, strict=True))))
        await asyncio.gather(*(u.wait_answers(n, timeout=120) for u, n in zip(users, shares, strict=True)))
        await asyncio.sleep(0.5)  # a duplicate answer would arrive right after
    finally:
        await asyncio.gather(*(u.close() for u in users), return_exceptions=True)
    return [
        (a.taskId, a.workerId, float(a.processingTime)) for u in users for e in u.exchanges.values() for a in e.answers
    ]


async def _ask(user: ChatClient, index: int, count: int) -> None:
    for i in range(count):
        await user.ask(f"languages probe {index}.{i}", timeout=30)


def _mixed(languages: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """`per_language` workers of each language answer `questions` asked at once."""
    fleet = parse_fleet(dict.fromkeys(languages, args.per_language))
    warm = getattr(args, "warm_questions", None)
    warm = 2 * len(languages) * args.per_language if warm is None else warm
    with measurement_cluster(workers=dict(fleet), work_seconds=args.work_seconds, restart=False) as cluster:
        worker_ids = list(cluster.worker_ids)
        if warm > 0:
            run_loop(_ask_all(cluster.web_url, warm, args.clients))
        answers = run_loop(_ask_all(cluster.web_url, args.questions, args.clients))
    per_worker = {w: 0 for w in worker_ids} | dict(Counter(w for _, w, _ in answers))
    per_task = Counter(t for t, _, _ in answers)
    processing = processing_by_language((w, ms) for _, w, ms in answers)
    return {
        "fleet": fleet_label(fleet),
        "questions": args.questions,
        "warm_questions": warm,
        "work_seconds": args.work_seconds,
        **exactly_once(per_task, args.questions),
        "tasks_per_worker": per_worker,
        "evenness": evenness(per_worker),
        "processing": processing,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start-up, steady load and a mixed fleet, for each language that can run here."""
    languages, skipped = available_languages(args.languages)
    for language, reason in skipped.items():
        print(f"languages: skipping {language}: {reason}", flush=True)
    if not languages:
        raise WorkerUnavailableError(
            "no worker of the languages asked for can run here: " + "; ".join(skipped.values())
        )
    startup = _startup(languages, args.repeats)
    steady = _steady(languages, args)
    mixed = _mixed(languages, args)
    start_ms = {language: median(f["first_task_ms"]) for language, f in startup.items()}
    return {
        "name": NAME,
        "languages": languages,
        "skipped": skipped,
        "repeats": args.repeats,
        "startup": startup,
        "targets": start_targets(start_ms),
        "steady": {"clients": args.clients, "seconds": args.seconds, "warmup": args.warmup, "by_language": steady},
        "mixed": mixed,
    }


def compare_languages(  # noqa: PLR0913 (one keyword per option, as the notebooks pass them)
    languages: Sequence[str] = LANGUAGES,
    *,
    repeats: int = 5,
    clients: int = 8,
    seconds: float = 10.0,
    warmup: float = 3.0,
    per_language: int = 2,
    questions: int = 60,
    work_seconds: float = 0.1,
    warm_questions: int | None = None,
) -> dict[str, Any]:
    """`measure` with keywords instead of parsed options (the notebooks' entry point); not saved. It runs in
    a thread of its own: a notebook's kernel already runs an event loop in this one."""
    args = argparse.Namespace(
        languages=parse_languages(",".join(languages)),
        repeats=repeats,
        clients=clients,
        seconds=seconds,
        warmup=warmup,
        per_language=per_language,
        questions=questions,
        work_seconds=work_seconds,
        warm_questions=warm_questions,
    )
    with ThreadPoolExecutor(1, thread_name_prefix="bench-languages") as pool:
        return pool.submit(measure, args).result()


def summary(result: dict[str, Any]) -> str:
    """Per language: start to first task, CPU per task, RSS, processing time; the mixed fleet's verdicts."""
    lines = [f"languages: {', '.join(result['languages'])}"]
    lines += [f"  skipped {language}: {reason}" for language, reason in result.get("skipped", {}).items()]
    steady, mixed, targets = result["steady"]["by_language"], result["mixed"], result["targets"]
    for language in result["languages"]:
        start = result["startup"][language]
        target = targets.get(language)
        verdict = f" (target <= {target['target_ms']:g} ms: {'met' if target['met'] else 'MISSED'})" if target else ""
        cpu, proc = steady.get(language, {}), mixed["processing"].get(language, {})
        lines.append(
            f"  {language}: start to first task p50 {start['start_to_first_task_ms']} ms{verdict}, "
            f"to connect {start['start_to_connect_ms']} ms; CPU {cpu.get('cpu_ms_per_task')} ms per task "
            f"({cpu.get('answers')} tasks); RSS {cpu.get('rss_mib')} MiB; processing p50 {proc.get('p50_ms')} ms, "
            f"p95 {proc.get('p95_ms')} ms ({proc.get('n', 0)} tasks)"
        )
    even = mixed["evenness"]
    lines.append(
        f"  mixed fleet {mixed['fleet']}, {mixed['questions']} questions at once, {mixed['work_seconds']:g} s work: "
        f"{mixed['answered']} answered, {mixed['missing']} missing, {mixed['duplicates']} duplicates "
        f"({'exactly once' if mixed['exactly_once'] else 'NOT exactly once'}); tasks per worker {even['min']} to "
        f"{even['max']} ({'even' if even['even'] else 'NOT even'}: differ by {even['spread']})"
    )
    return "\n".join(lines)


def chart(result: dict[str, Any]) -> Figure:
    """Bars by language (start-up, CPU per task, RSS) and the processing times of the mixed fleet."""
    from lab.charts.languages import languages_benchmark  # matplotlib: only when drawing

    return languages_benchmark(result)
