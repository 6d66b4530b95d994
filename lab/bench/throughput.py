"""Benchmark `throughput`: the most answers per second the system sustains, with closed-loop clients, and
where the CPU goes per answer; with workers of several languages (`--workers python=2,go=2`), also CPU per
task and resident memory (RSS) of each language's workers."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.analysis.stats import percentile
from lab.bench.common import figure, per_second
from lab.bench.language_figures import as_fleet, fleet_label, language_of, steady_figures
from lab.bench.procfs import group_cpu_seconds, group_rss_mib, worker_languages
from lab.loadgen.client import ChatClient, Exchange
from lab.system.presets import measurement_cluster
from lab.system.procs import cpu_seconds
from lab.system.workers import fleet_size
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NAME = "throughput"
HELP = "answers per second sustained by closed-loop clients, zero work, offline model at zero latency"


WORKERS = 4
"""The default of `--workers FLEET` (a number of Python workers, or `go=4`, `python=2,go=2`), which
`lab bench` adds (lab.commands.fleet)."""


def add_options(parser: argparse.ArgumentParser) -> None:
    """--clients, --seconds, --warmup (and `--workers`: see WORKERS)."""
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients, each asking again at once")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the measured duration")


@dataclass
class _Counted:
    answered_at_s: list[float] = field(default_factory=list)  # since the start of the measured window
    latencies_ms: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU time spent in the window, by part
    cpu_by_language_s: dict[str, float] = field(default_factory=dict)  # the workers' part, by language
    answers_by_language: dict[str, int] = field(default_factory=dict)  # answers in the window, by language
    rss_mib: dict[str, float] = field(default_factory=dict)  # each worker process's RSS at the window's end


def _workers_cpu(pids: Mapping[str, int], languages: Mapping[str, str]) -> dict[str, float]:
    """CPU seconds so far of each language's worker processes (whole process groups)."""
    spent: dict[str, float] = {}
    for name, language in languages.items():
        if name in pids:
            spent[language] = spent.get(language, 0.0) + group_cpu_seconds(pids[name])
    return spent


def _cpu_now(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of the broker, the master, all workers together, and the clients (this process)."""
    workers = sum(cpu_seconds(pid) for name, pid in pids.items() if name.startswith("worker"))
    # The master's process group: its web front too, when it runs in a process of its own (WEB_PROCESS).
    named = {part: group_cpu_seconds(pids[part]) for part in ("master",) if part in pids}
    named |= {part: cpu_seconds(pids[part]) for part in ("mosquitto",) if part in pids}
    return {**named, "workers": workers, "clients": time.process_time()}


async def closed_loop(
    url: str,
    clients: int,
    connected: Callable[[], float],
    answered: Callable[[Exchange, float], None],
    answer_timeout_s: float = 60.0,
) -> None:
    """`clients` users each ask, wait for the answer and ask again. Once all are connected, `connected()`
    says until when (time.monotonic()) to keep asking; `answered(exchange, when)` hears of every answer."""
    users = [ChatClient(url) for _ in range(clients)]
    try:
        await asyncio.gather(*(u.connect() for u in users))
        stop_at = connected()

        async def run(user: ChatClient) -> None:
            i = 0
            while time.monotonic() < stop_at:
                exchange = await user.ask(f"throughput probe {i}", timeout=30)
                i += 1
                await user.wait_answers(i, timeout=answer_timeout_s)
                answered(exchange, exchange.answered_at or time.monotonic())

        await asyncio.gather(*(run(u) for u in users))
    finally:
        await asyncio.gather(*(u.close() for u in users), return_exceptions=True)


async def measured_window(
    url: str,
    clients: int,
    seconds: float,
    warmup: float,
    pids: Mapping[str, int] | None = None,
    languages: Mapping[str, str] | None = None,
) -> _Counted:
    """Closed-loop clients for `warmup` then `seconds`; what was answered and spent in the measured window.
    `pids` by process name and the `languages` of the worker processes (by name) let it count CPU and RSS."""
    counted = _Counted()
    window = (0.0, 0.0)  # the measured window, set once the clients are connected
    loop = asyncio.get_running_loop()
    pids, languages = pids or {}, languages or {}

    def mark_cpu(start: dict[str, float]) -> None:
        by_language = {f"language:{k}": v for k, v in _workers_cpu(pids, languages).items()}
        now = {**_cpu_now(pids), **by_language}
        if not start:
            start.update(now)
            return
        spent = {part: value - start.get(part, 0.0) for part, value in now.items()}
        counted.cpu_s = {part: value for part, value in spent.items() if not part.startswith("language:")}
        counted.cpu_by_language_s = {
            part.partition(":")[2]: value for part, value in spent.items() if part.startswith("language:")
        }
        counted.rss_mib = {name: group_rss_mib(pids[name]) for name in languages if name in pids}

    def connected() -> float:
        nonlocal window
        measure_from = time.monotonic() + warmup
        window = (measure_from, measure_from + seconds)
        start: dict[str, float] = {}
        loop.call_later(warmup, mark_cpu, start)
        loop.call_later(warmup + seconds, mark_cpu, start)
        return window[1]

    def answered(exchange: Exchange, done: float) -> None:
        if window[0] <= done < window[1]:
            counted.answered_at_s.append(done - window[0])
            counted.latencies_ms.append((done - exchange.sent_at) * 1000)
            if exchange.answer is not None:
                language = language_of(exchange.answer.workerId)
                counted.answers_by_language[language] = counted.answers_by_language.get(language, 0) + 1

    await closed_loop(url, clients, connected, answered)
    return counted


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`clients` users each ask, wait for the answer and ask again; answers received in the `seconds` after
    `warmup`, divided by `seconds`."""
    fleet = as_fleet(args.workers)
    with measurement_cluster(workers=dict(fleet)) as cluster:
        pids = {name: proc.pid for name, proc in cluster.processes.items()}
        languages = worker_languages(cluster.processes)
        closed = measured_window(cluster.web_url, args.clients, args.seconds, args.warmup, pids, languages)
        counted = run_loop(closed)
    answers = len(counted.answered_at_s)
    # Where the CPU goes, per answer: on 2 cores, N answers/s leave 2000/N ms of CPU per answer in all.
    cpu_ms = {part: round(1000 * spent / max(1, answers), 2) for part, spent in counted.cpu_s.items()}
    return {
        "name": NAME,
        "workers": fleet_size(fleet),
        "fleet": fleet_label(fleet),
        "fleet_counts": dict(fleet),
        "clients": args.clients,
        "seconds": args.seconds,
        "answers": answers,
        "answers_per_s": round(answers / args.seconds, 1),
        "latency_p50_ms": round(percentile(counted.latencies_ms, 50), 1),
        "latency_p99_ms": round(percentile(counted.latencies_ms, 99), 1),
        "answers_per_second": per_second(counted.answered_at_s, args.seconds - 1e-9),
        "cpu_ms_per_answer": {**cpu_ms, "total": round(sum(cpu_ms.values()), 2)},
        "by_language": steady_figures(
            counted.cpu_by_language_s, counted.answers_by_language, counted.rss_mib, languages
        ),
    }


def summary(result: dict[str, Any]) -> str:
    """Answers per second and latency."""
    cpu = result.get("cpu_ms_per_answer", {})
    languages = result.get("by_language", {})
    return (
        f"throughput with {result['workers']} workers ({result.get('fleet', 'python')}) and "
        f"{result['clients']} closed-loop clients: "
        f"{result['answers_per_s']} answers/s ({result['answers']} in {result['seconds']:g} s), "
        f"latency p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms"
        + ("\nCPU per answer (ms): " + ", ".join(f"{part} {ms}" for part, ms in cpu.items()) if cpu else "")
        + "".join(
            f"\n{language} workers ({f['workers']}): {f['answers']} tasks, CPU {f['cpu_ms_per_task']} ms per task, "
            f"RSS {f['rss_mib']} MiB each (max {f['rss_max_mib']})"
            for language, f in languages.items()
        )
    )


def chart(result: dict[str, Any]) -> Figure:
    """Answers in each second of the measured window, with the mean."""
    fig, (ax,) = figure()
    counts = result.get("answers_per_second", [])
    ax.bar(range(len(counts)), counts, width=0.9, align="edge", color="tab:blue", label="answers in the second")
    ax.axhline(result["answers_per_s"], color="tab:red", linestyle="--", label=f"mean {result['answers_per_s']}/s")
    ax.set_xlabel("second of the measured window")
    ax.set_ylabel("answers")
    ax.set_title(
        f"Throughput, {result['workers']} workers ({result.get('fleet', 'python')}), {result['clients']} clients"
    )
    ax.legend(fontsize="small")
    return fig
