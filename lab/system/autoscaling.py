"""An autoscaled local fleet: `MIN..MAX` bounds, and the autoscaler process (`python -m services.autoscaler`,
ACTUATOR=local) that starts and stops the workers of one language between them.

With `autoscale`, a LocalCluster starts no workers itself: the autoscaler owns the whole fleet (its minimum is
the floor), so that what it counts and what the master lists are the same workers. One autoscaler sizes one
language; a mixed fleet would take one autoscaler per language (each its own range), which the lab does not
start.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lab.system.process_table import AUTOSCALER
from lab.system.workers import worker_kind
from services.autoscaler.settings import AutoscalerSettings
from services.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from lab.system.config import ClusterConfig

__all__ = ["AUTOSCALER", "Autoscale", "autoscale_text", "autoscaler_argv", "check_autoscale", "parse_autoscale"]

Autoscale = tuple[int, int]
"""The fewest and the most workers: (min, max), 0 <= min <= max, max >= 1."""

_RANGE = re.compile(r"\s*(\d+)\s*\.\.\s*(\d+)\s*")
STOP_MARGIN_S = 10.0  # beyond its workers' longest task: their goodbyes, and its own exit


def check_autoscale(bounds: Autoscale) -> Autoscale:
    """`bounds` as a pair of whole numbers with 0 <= min <= max and max >= 1; ValueError otherwise."""
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise ValueError(f"autoscale is (min, max) workers, got {bounds!r}") from None
    if any(isinstance(n, bool) or not isinstance(n, int) for n in (low, high)):
        raise ValueError(f"autoscale bounds must be whole numbers, got {bounds!r}")
    if low < 0:
        raise ValueError(f"the autoscaled minimum must be >= 0, got {low}")
    if high < 1:
        raise ValueError(f"the autoscaled maximum must be >= 1, got {high}")
    if low > high:
        raise ValueError(
            f"the autoscaled minimum ({low}) is above the maximum ({high}): write MIN..MAX, e.g. {high}..{low}"
        )
    return low, high


def parse_autoscale(text: str) -> Autoscale:
    """`"2..8"` as (2, 8); ValueError saying what is expected for anything else."""
    match = _RANGE.fullmatch(text)
    if match is None:
        raise ValueError(f"autoscale is MIN..MAX workers, such as 1..8 (whole numbers, min <= max), got {text!r}")
    return check_autoscale((int(match[1]), int(match[2])))


def autoscale_text(bounds: Autoscale, language: str) -> str:
    """`2..8 python workers, autoscaled`."""
    return f"{bounds[0]}..{bounds[1]} {language} workers, autoscaled"


def autoscaler_argv() -> list[str]:
    """The command that starts the autoscaler."""
    return [sys.executable, "-m", "services.autoscaler"]


def autoscaler_env(
    config: ClusterConfig,
    bounds: Autoscale,
    language: str,
    operator_token: str,
    state_dir: Path,
    base: Mapping[str, str],
) -> dict[str, str]:
    """The autoscaler's environment: what its workers inherit (a worker's of `config`, without WORKER_ID: it
    gives each its own, and their heartbeat files beside `state_dir`/autoscaled.health), then where the master
    is, the bounds and the worker to start, then the cluster's extra_env (its own settings, such as COOLDOWN_S)."""
    workers = config.worker_env("autoscaled", base, health_file=state_dir / "autoscaled.health")
    env = {k: v for k, v in workers.items() if k != WorkerSettings.env_name("worker_id")}
    env.update(
        AutoscalerSettings.env_of(
            master_url=config.web_url,
            operator_token=operator_token,
            min_workers=bounds[0],
            max_workers=bounds[1],
            actuator="local",
            worker_language=language,
            worker_command=shlex.join(worker_kind(language).command()),
        )
    )
    env.update(config.extra_env)
    return env


def autoscaler_grace_s(env: Mapping[str, str]) -> float:
    """How long a stopping autoscaler may take: it stops its workers, each given its longest task."""
    work = float(WorkerSettings.read_one("work_seconds", env))
    offline = WorkerSettings.read_one("model_mode", env) == "offline"
    model = 0.0 if offline else float(WorkerSettings.read_one("gemini_timeout_seconds", env))
    return work + model + STOP_MARGIN_S
