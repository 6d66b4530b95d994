"""The figures of `lab bench peer` from its runs: each side's runs combined, the summary line and the chart.

`lab bench peer` runs each side `--rounds` times, alternating (ours, Celery, ours, Celery, ...), so that a
drift of this shared machine during the benchmark weighs on both sides alike. Each run's own figures are kept
under ``ours_runs`` and ``celery_runs`` (answers/s, p50, p99, CPU, workers, in the order they ran); a side's
headline figures (``ours_per_s``, ``ours_p99_ms``, the CPU figures, ...) are the mean of its runs,
``ours_answers`` and ``ours_tasks_by_worker`` their sum, and ``ratio`` is ours' mean answers/s over Celery's.
``ratios`` has the ratio of each round, ``ours_per_s_spread_pct`` how far apart a side's runs are ((max - min)
/ mean of answers/s, in %).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.bench.common import figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIDES = ("ours", "celery")
# Figures of one run that a side's headline averages, with the decimals they are rounded to.
MEANS = {
    "per_s": 1,
    "p50_ms": 1,
    "p99_ms": 1,
    "client_cpu_pct": 1,
    "system_cpu_pct": 1,
    "machine_cpu_pct": 1,
    "client_cpu_ms_per_answer": 2,
    "system_cpu_ms_per_answer": 2,
}


def combine(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A side's headline figures from its runs (unprefixed keys): means, answers and tasks summed."""
    out: dict[str, Any] = {key: round(statistics.fmean(r[key] for r in runs), digits) for key, digits in MEANS.items()}
    out["answers"] = sum(r["answers"] for r in runs)
    out["worker_ids"] = sorted({w for r in runs for w in r["worker_ids"]})
    tasks: Counter[str] = Counter()
    for r in runs:
        tasks.update(r["tasks_by_worker"])
    out["tasks_by_worker"] = dict(sorted(tasks.items()))
    rates = [r["per_s"] for r in runs]
    mean = statistics.fmean(rates)
    out["per_s_spread_pct"] = round(100 * (max(rates) - min(rates)) / mean, 1) if mean else None
    return out


def side_figures(side: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The result's keys of one side: its combined figures prefixed with the side, and its runs."""
    return {**{f"{side}_{k}": v for k, v in combine(runs).items()}, f"{side}_runs": list(runs)}


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """``ratio`` (mean answers/s, ours over Celery) and ``ratios`` (the same in each round)."""
    pairs = zip(result["ours_runs"], result["celery_runs"], strict=True)
    return {
        "ratio": _ratio(result["ours_per_s"], result["celery_per_s"]),
        "ratios": [_ratio(ours["per_s"], celery["per_s"]) for ours, celery in pairs],
    }


def _ratio(ours: float, celery: float) -> float | None:
    return round(ours / celery, 3) if celery else None


def runs_of(result: dict[str, Any], side: str) -> list[dict[str, Any]]:
    """The runs of one side; a result saved before there were rounds counts as its one run."""
    runs = result.get(f"{side}_runs")
    if runs:
        return list(runs)
    return [{"round": 1, **{k: result[f"{side}_{k}"] for k in MEANS if f"{side}_{k}" in result}}]


# -- summary and chart --------------------------------------------------------------------------------------


def _both(runs: Sequence[dict[str, Any]], key: str) -> str:
    return " / ".join(f"{r[key]}" for r in runs)


def summary(result: dict[str, Any]) -> str:
    """Throughput, latency and CPU of both sides (the mean of the rounds, then each run), and their ratio."""
    redis = "Redis with AOF" if result.get("redis_durable") else "Redis in memory"
    rounds = result.get("rounds", 1)
    sides = []
    for label, key in (("ours", "ours"), (f"Celery ({result['celery_pool']} pool, {redis})", "celery")):
        runs = runs_of(result, key)
        text = (
            f"{label} {result[f'{key}_per_s']} answers/s (p50 {result[f'{key}_p50_ms']} ms, "
            f"p99 {result[f'{key}_p99_ms']} ms; CPU: clients {result[f'{key}_client_cpu_pct']}%, "
            f"system {result[f'{key}_system_cpu_pct']}%, machine {result[f'{key}_machine_cpu_pct']}%; "
            f"CPU ms per answer: clients {result[f'{key}_client_cpu_ms_per_answer']}, "
            f"system {result[f'{key}_system_cpu_ms_per_answer']})"
        )
        if len(runs) > 1:
            text += (
                f" [runs: {_both(runs, 'per_s')} answers/s, p50 {_both(runs, 'p50_ms')} ms, "
                f"p99 {_both(runs, 'p99_ms')} ms, system CPU {_both(runs, 'system_cpu_pct')}%, "
                f"system CPU ms per answer {_both(runs, 'system_cpu_ms_per_answer')}]"
            )
        sides.append(text)
    head = f"peer, {result['workers']} workers, {result['clients']} closed-loop clients, {result['seconds']} s each"
    if rounds > 1:
        head += f", {rounds} rounds alternating ours and Celery (figures: mean of the rounds, then each run)"
    ratio = f"ours/Celery = {result['ratio']}"
    if len(result.get("ratios") or []) > 1:
        ratio += f" (rounds: {' / '.join(str(r) for r in result['ratios'])})"
    return f"{head}: {sides[0]}; {sides[1]}; {ratio} (CPU in % of one core)"


def chart(result: dict[str, Any]) -> Figure:
    """Answers per second, and p50/p99 latency, ours against Celery: one bar per run, the mean marked."""
    fig, (rate, latency) = figure(1, 2)
    sides = (("ours", "ours", "tab:blue"), ("celery", "Celery+Redis", "tab:orange"))
    runs = {key: runs_of(result, key) for key, _, _ in sides}
    per_side = max(len(r) for r in runs.values())
    width = 0.8 / per_side
    for x, (key, _, colour) in enumerate(sides):
        for i, run in enumerate(runs[key]):
            offset = x + (i - (per_side - 1) / 2) * width
            bars = rate.bar([offset], [run["per_s"]], width * 0.95, color=colour, alpha=_shade(i, per_side))
            label = f"run {run.get('round', i + 1)}\n{run['per_s']:.0f}/s"
            rate.bar_label(bars, labels=[label], label_type="center", fontsize="small")
        mean = result[f"{key}_per_s"]
        rate.hlines(mean, x - 0.45, x + 0.45, color="black", linewidth=1, linestyle="--")
        rate.annotate(f"mean {mean:.0f}", (x, mean), textcoords="offset points", xytext=(0, 3), ha="center")
    rate.set_xticks(range(len(sides)), [label for _, label, _ in sides])
    rate.margins(y=0.12)  # room above the bars for the mean's label
    rate.set_ylabel("answers per second (dashed: mean of the runs)")
    rate.set_title(f"Throughput ({result['workers']} workers, {result['clients']} clients)")
    bars_per_group = sum(len(r) for r in runs.values())
    width = 0.8 / bars_per_group
    slot = 0
    for key, label, colour in sides:
        for i, run in enumerate(runs[key]):
            offset = (slot - (bars_per_group - 1) / 2) * width
            name = label if len(runs[key]) == 1 else f"{label}, run {run.get('round', i + 1)}"
            values = [run["p50_ms"], run["p99_ms"]]
            bars = latency.bar(
                [offset, 1 + offset], values, width * 0.95, color=colour, alpha=_shade(i, per_side), label=name
            )
            latency.bar_label(bars, fmt="%.0f", fontsize="x-small")
            slot += 1
    latency.set_xticks([0, 1], ["p50", "p99"])
    latency.set_ylabel("end-to-end latency (ms)")
    latency.set_title("Latency")
    latency.legend(fontsize="small")
    return fig


def _shade(run: int, runs: int) -> float:
    """Opacity of a side's run-th bar: the first full, later ones lighter."""
    return 1.0 if runs <= 1 else 1.0 - 0.45 * run / (runs - 1)
