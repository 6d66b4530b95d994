"""Local systems set up for measuring: free ports, the offline model, quiet logs, per-session limits lifted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.system.local import LocalCluster
from lab.system.spec import ClusterSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from lab.system.spec import ServiceOptions

__all__ = ["GEMINI_LIKE_LATENCY_MS", "GEMINI_LIKE_SD_MS", "UNLIMITED_SESSIONS", "lab_cluster", "measurement_cluster"]

# The offline model's latency when it stands in for Gemini: a Flash model answers a short question in
# about 1-2 s. Lognormal with this mean and spread (see services/worker/models.py).
GEMINI_LIKE_LATENCY_MS = 1500.0
GEMINI_LIKE_SD_MS = 700.0

UNLIMITED_SESSIONS = {"RATE_PER_MINUTE": "1000000", "MAX_IN_FLIGHT_PER_SESSION": "1000000"}
"""The master's per-session limits lifted: a load generator's users ask far more often than people do."""


def lab_cluster(
    workers: int,
    work_seconds: float = 10.0,
    model_latency_ms: float = GEMINI_LIKE_LATENCY_MS,
    model_latency_sd_ms: float = GEMINI_LIKE_SD_MS,
    **options: Unpack[ServiceOptions],
) -> LocalCluster:
    """A local system for experiments: free ports, the offline model at the given latency, quiet logs, and
    no per-session limits. `options` are further `ClusterSpec` fields; `extra_env` is added to the preset's."""
    env = {
        "LOG_LEVEL": "WARNING",
        "OFFLINE_LATENCY_MS": str(model_latency_ms),
        "OFFLINE_LATENCY_SD_MS": str(model_latency_sd_ms),
        **UNLIMITED_SESSIONS,
    }
    env.update(options.get("extra_env") or {})
    options["extra_env"] = env
    options.setdefault("log_sink", lambda name, line: None)
    spec = ClusterSpec(
        workers=workers, work_seconds=work_seconds, web_port=0, grpc_port=0, mqtt_port=0, model_mode="offline"
    )
    return LocalCluster(spec, **options)


def measurement_cluster(workers: int, work_seconds: float = 0.0, **options: Unpack[ServiceOptions]) -> LocalCluster:
    """`lab_cluster` with a model that answers at once: measuring clients time the system, not a model."""
    return lab_cluster(workers, work_seconds, model_latency_ms=0.0, model_latency_sd_ms=0.0, **options)
