"""A benchmark's figures (JSON) and chart (PNG) under data/bench/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.paths import BENCH_DIR
from lab.runs.environment import machine

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CHART_DPI", "file_stem", "record", "save"]

CHART_DPI = 110


def file_stem(result: dict[str, Any]) -> str:
    """The name of a result's files: the benchmark's name, with `-<N>w` when it says how many workers, then
    the workers' language when not Python (`registration-go`, `throughput-4w-go`) or the mix of a mixed
    fleet (`throughput-4w-python2-go2`), so that runs of different languages do not overwrite each other."""
    suffix = f"-{result['workers']}w" if "workers" in result else ""
    fleet: dict[str, int] = result.get("fleet_counts") or {}
    if len(fleet) > 1:
        suffix += "-" + "-".join(f"{language}{count}" for language, count in fleet.items())
    elif fleet and (language := next(iter(fleet))) != "python":
        suffix += f"-{language}"
    elif result.get("language", "python") != "python":
        suffix += f"-{result['language']}"
    return f"{result['name']}{suffix}"


def record(result: dict[str, Any]) -> dict[str, Any]:
    """A benchmark's figures with the machine they were measured on and when (UTC)."""
    return {**result, "machine": machine(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def save(result: dict[str, Any], directory: Path = BENCH_DIR, figure: Figure | None = None) -> Path:
    """Write one benchmark's figures as `<stem>.json` (with `record`'s additions) and, given a figure, the
    chart as `<stem>.png` next to it; return the JSON file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{file_stem(result)}.json"
    path.write_text(json.dumps(record(result), indent=2) + "\n")
    if figure is not None:
        figure.savefig(path.with_suffix(".png"), dpi=CHART_DPI)
    return path
