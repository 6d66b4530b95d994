"""Benchmark `overhead`: what the system adds to a question's time, one question at a time."""

from __future__ import annotations

import argparse
import statistics
from typing import TYPE_CHECKING, Any

from lab.analysis.stats import percentile
from lab.bench.common import add_journal_option, figure
from lab.loadgen.client import ChatClient
from lab.system.presets import measurement_cluster
from services.loop import run as run_loop

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NAME = "overhead"
HELP = "end-to-end latency minus processing_time_ms, one question at a time, zero work, 1 worker"


def add_options(parser: argparse.ArgumentParser) -> None:
    """--questions, --warmup, --journal."""
    parser.add_argument("--questions", type=int, default=300, help="measured questions")
    parser.add_argument("--warmup", type=int, default=20, help="questions asked first and not counted")
    add_journal_option(parser)


async def ask_one_at_a_time(url: str, questions: int, warmup: int) -> list[float]:
    """One user asks `warmup` + `questions` questions in turn; the overhead of each measured one (ms): its time
    from send to answer minus the worker's processing time."""
    overheads: list[float] = []
    async with ChatClient(url) as user:
        for i in range(warmup + questions):
            exchange = await user.ask(f"overhead probe {i}")
            await user.wait_answers(i + 1, timeout=30)
            answer = exchange.answer
            assert answer is not None and exchange.answered_at is not None
            if i >= warmup:
                total_ms = (exchange.answered_at - exchange.sent_at) * 1000
                overheads.append(total_ms - answer.processingTime)
    return overheads


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One user asks `questions` questions in turn (after `warmup`) of 1 worker with no work and the offline
    model at zero latency; per question, the time from send to answer minus the worker's processing time."""
    with measurement_cluster(workers=1, journal=args.journal) as cluster:
        values = run_loop(ask_one_at_a_time(cluster.web_url, args.questions, args.warmup))
    return {
        "name": NAME,
        "journal": args.journal,
        "questions": args.questions,
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
        "max_ms": round(max(values), 2),
        "overheads_ms": [round(v, 2) for v in values],
    }


def summary(result: dict[str, Any]) -> str:
    """Percentiles of the overhead."""
    return (
        f"overhead over {result['questions']} questions (latency minus processing time): "
        f"p50 {result['p50_ms']} ms, p90 {result['p90_ms']} ms, p99 {result['p99_ms']} ms, "
        f"mean {result['mean_ms']} ms, max {result['max_ms']} ms"
    )


def chart(result: dict[str, Any]) -> Figure:
    """Each question's overhead in order, and their histogram with p50 and p99."""
    fig, (series, histogram) = figure(1, 2)
    values = result.get("overheads_ms", [])
    series.plot(range(1, len(values) + 1), values, ".", markersize=3)
    series.set_xlabel("question")
    series.set_ylabel("overhead (ms)")
    series.set_title("Overhead per question")
    histogram.hist(values, bins=40, color="tab:blue")
    for key, colour in (("p50_ms", "tab:orange"), ("p99_ms", "tab:red")):
        histogram.axvline(result[key], color=colour, linestyle="--", label=f"{key[:3]} {result[key]} ms")
    histogram.set_xlabel("overhead (ms)")
    histogram.set_ylabel("questions")
    histogram.set_title("Distribution")
    histogram.legend(fontsize="small")
    return fig
