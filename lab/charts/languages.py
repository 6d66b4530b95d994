"""Charts by worker language: the `languages` benchmark's figures (start-up, CPU per task, memory, processing
time) and a run's utilization and latency by the language of its workers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lab.analysis.languages import breakdown
from lab.charts.style import BAND_COLOUR, BUSY_HIGH, BUSY_LOW, TARGET_COLOUR, legend, no_data, percent_ticks, run_name

__all__ = ["LANGUAGE_COLOURS", "by_language", "languages_benchmark"]

LANGUAGE_COLOURS = {"python": "tab:blue", "go": "tab:cyan", "java": "tab:orange"}
"""One colour per worker language, the same in every chart."""
_STEPS = {
    "start_to_connect_ms": "start → MQTT connect",
    "connect_to_assignable_ms": "connect → assignable",
    "assignable_to_first_task_ms": "assignable → first task",
}


def _colour(language: str) -> str:
    return LANGUAGE_COLOURS.get(language, "tab:grey")


def _bars(ax: Axes, values: Mapping[str, float], unit: str, title: str) -> None:
    """One bar per language, its value written on top; "no data" when there is nothing to draw."""
    shown = {k: v for k, v in values.items() if not math.isnan(v)}
    if not shown:
        no_data(ax)
    names = list(shown)
    bars = ax.bar(names, [shown[n] for n in names], color=[_colour(n) for n in names])
    ax.bar_label(bars, labels=[f"{shown[n]:.3g}" for n in names], fontsize="small")
    ax.set_ylabel(unit)
    ax.set_title(title)


def _targets(ax: Axes, names: list[str], targets: Mapping[str, Any]) -> None:
    """A short dashed line at each language's target, over its bar."""
    label = "target"
    for i, name in enumerate(names):
        if name in targets:
            ax.hlines(targets[name]["target_ms"], i - 0.4, i + 0.4, colors=TARGET_COLOUR, linestyles="--", label=label)
            label = "_"  # one legend entry for all of them


def _startup(ax: Axes, result: Mapping[str, Any]) -> None:
    startup: Mapping[str, Any] = result.get("startup", {})
    names = list(startup)
    if not names:
        no_data(ax)
    bottom = [0.0] * len(names)
    for (key, label), shade in zip(_STEPS.items(), ("0.8", "0.6", "0.4"), strict=True):
        heights = [float(startup[n][key]) for n in names]
        ax.bar(names, heights, bottom=bottom, label=label, color=shade, edgecolor=[_colour(n) for n in names])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    medians = [float(startup[n]["start_to_first_task_ms"]) for n in names]
    ax.scatter(names, medians, color="black", marker="_", s=300, zorder=3, label="start → first task, p50")
    for i, value in enumerate(medians):
        ax.annotate(f"{value:.0f} ms", (i, value), textcoords="offset points", xytext=(0, 4), ha="center")
    _targets(ax, names, result.get("targets", {}))
    ax.set_ylabel("ms (p50 of each step)")
    ax.set_title(f"Start to first task ({result.get('repeats', '?')} starts each)")
    legend(ax)


def _processing(ax: Axes, processing: Mapping[str, Any], work_s: float) -> None:
    names = [n for n in processing if processing[n].get("values_ms")]
    if not names:
        no_data(ax)
        return
    parts = ax.boxplot([processing[n]["values_ms"] for n in names], patch_artist=True, showfliers=True)
    for patch, name in zip(parts["boxes"], names, strict=True):
        patch.set_facecolor(_colour(name))
        patch.set_alpha(0.6)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n({processing[n]['n']} tasks)" for n in names])
    ax.axhline(work_s * 1000, color="grey", linestyle=":", label=f"simulated work {work_s:g} s")
    values = [v for n in names for v in processing[n]["values_ms"] if v > 0]
    if values and max(values) > 10 * min(values):  # a cold JVM's first tasks next to warm ones
        ax.set_yscale("log")
    ax.set_ylabel("processing_time_ms")
    ax.set_title("Processing time, mixed fleet")
    legend(ax)


def languages_benchmark(result: Mapping[str, Any]) -> Figure:
    """The `languages` benchmark (lab.bench.languages): start to first task by step with the targets, CPU ms
    per task and RSS per worker at steady load, and the mixed fleet's processing times."""
    figure = Figure(figsize=(9, 7.5), layout="constrained")
    (start, cpu), (rss, processing) = figure.subplots(2, 2)
    _startup(start, result)
    steady: Mapping[str, Any] = result.get("steady", {}).get("by_language", {})
    _bars(cpu, {n: float(f["cpu_ms_per_task"]) for n, f in steady.items()}, "ms", "CPU per task, steady load")
    _bars(rss, {n: float(f["rss_mib"]) for n, f in steady.items()}, "MiB", "Resident memory (RSS) per worker")
    mixed: Mapping[str, Any] = result.get("mixed", {})
    _processing(processing, mixed.get("processing", {}), float(mixed.get("work_seconds", 0.0)))
    figure.suptitle("Workers by language")
    return figure


def by_language(tasks: pd.DataFrame, worker_events: pd.DataFrame, *, run_id: str | None = None) -> Figure:
    """A run's utilization in percent (with the target band) and latency p50/p95 in ms by worker language;
    ``run_id`` names the run above both."""
    table = breakdown(tasks, worker_events)
    figure = Figure(figsize=(9, 4), layout="constrained")
    if run_id:
        figure.suptitle(run_name(run_id) or "", fontsize="small", color="dimgrey")
    busy, latency = figure.subplots(1, 2)
    if table.empty:
        no_data(busy)
        no_data(latency)
        return figure
    names = table["language"].tolist()
    busy.axhspan(BUSY_LOW, BUSY_HIGH, color=BAND_COLOUR, alpha=0.15, label="target at normal load")
    percent = 100 * table["utilization"]
    bars = busy.bar(names, percent.fillna(0), color=[_colour(n) for n in names])
    busy.bar_label(bars, labels=[f"{u:.1f}%" if u == u else "n/a" for u in percent], fontsize="small")
    busy.set_ylim(0, 105)
    busy.set_ylabel("busy (% of online)")
    percent_ticks(busy.yaxis)
    busy.set_title("Utilization by worker language")
    legend(busy)
    x = range(len(names))
    latency.bar([i - 0.2 for i in x], table["latency_p50_ms"].fillna(0), width=0.4, label="p50", color="tab:blue")
    latency.bar([i + 0.2 for i in x], table["latency_p95_ms"].fillna(0), width=0.4, label="p95", color="tab:purple")
    latency.set_xticks(list(x), [f"{n}\n({a} answered)" for n, a in zip(names, table["answered"], strict=True)])
    latency.set_ylabel("ms")
    latency.set_title("Latency by worker language")
    legend(latency)
    return figure
