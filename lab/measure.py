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
    return LocalCluster(
        workers=workers,
        work_seconds=work_seconds,
        web_port=0,
        grpc_port=0,
        mqtt_port=0,
        model_mode="offline",
        log_sink=lambda name, line: None,
        extra_env={"LOG_LEVEL": "WARNING", "OFFLINE_LATENCY_MS": "0", "RATE_PER_MINUTE": "1000000"},
        **options,
    )


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
