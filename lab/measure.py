"""What every measurement shares: a quiet local system with the per-session limits lifted, and a
description of the machine the figures come from."""

from __future__ import annotations

import os
import platform
from typing import Any

from lab.cluster import LocalCluster


def measurement_cluster(workers: int, work_seconds: float = 0.0, **options: Any) -> LocalCluster:
    """A local system on free ports with the offline model (zero latency), quiet logs and no per-session
    limits: measuring clients ask far more than a person would."""
    # Imported here: lab.experiment imports this module for machine().
    from lab.experiment import lab_cluster

    return lab_cluster(workers, work_seconds, model_latency_ms=0.0, model_latency_sd_ms=0.0, **options)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
