"""Local systems set up for measuring: free ports, the offline model, quiet logs, per-session limits lifted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.system.local import LocalCluster
from lab.system.spec import ClusterSpec
from lab.system.workers import FleetSpec
from services.envconfig import ServiceSettings
from services.master.settings import MasterSettings
from services.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from lab.system.workers import FleetSpec
from lab.system.spec import ServiceOptions

__all__ = [
    "GEMINI_LIKE_LATENCY_MS",
    "GEMINI_LIKE_SD_MS",
    "LIFTED_LIMIT",
    "UNLIMITED_SESSIONS",
    "lab_cluster",
    "measurement_cluster",
    "sessions_unlimited",
]

# The offline model's latency when it stands in for Gemini: a Flash model answers a short question in
# about 1-2 s. Lognormal with this mean and spread (see services/worker/models.py).
GEMINI_LIKE_LATENCY_MS = 1500.0
GEMINI_LIKE_SD_MS = 700.0

LIFTED_LIMIT = 1_000_000
"""A per-session limit high enough that no load the lab generates reaches it."""


def sessions_unlimited(questions: int = LIFTED_LIMIT) -> dict[str, str]:
    """The master's environment with its per-session limits lifted: a load generator's users ask far more
    often than people do. Questions per minute and unanswered questions are allowed up to `questions` or
    LIFTED_LIMIT, whichever is more (one session that asks `questions` at once needs no more)."""
    limit = max(questions, LIFTED_LIMIT)
    return MasterSettings.env_of(rate_per_minute=limit, max_in_flight_per_session=limit)


UNLIMITED_SESSIONS = sessions_unlimited()
"""`sessions_unlimited()`, for callers that want the mapping itself."""


def lab_cluster(
    workers: FleetSpec,
    work_seconds: float = 10.0,
    model_latency_ms: float = GEMINI_LIKE_LATENCY_MS,
    model_latency_sd_ms: float = GEMINI_LIKE_SD_MS,
    **options: Unpack[ServiceOptions],
) -> LocalCluster:
    """A local system for experiments: free ports, the offline model at the given latency, quiet logs, and
    no per-session limits. `options` are further `ClusterSpec` fields; `extra_env` is added to the preset's."""
    env = {
        **ServiceSettings.env_of(log_level="WARNING"),
        **WorkerSettings.env_of(offline_latency_ms=model_latency_ms, offline_latency_sd_ms=model_latency_sd_ms),
        **sessions_unlimited(),
    }
    env.update(options.get("extra_env") or {})
    options["extra_env"] = env
    options.setdefault("log_sink", lambda name, line: None)
    spec = ClusterSpec(
        workers=workers, work_seconds=work_seconds, web_port=0, grpc_port=0, mqtt_port=0, model_mode="offline"
    )
    return LocalCluster(spec, **options)


def measurement_cluster(
    workers: FleetSpec, work_seconds: float = 0.0, **options: Unpack[ServiceOptions]
) -> LocalCluster:
    """`lab_cluster` with a model that answers at once: measuring clients time the system, not a model."""
    return lab_cluster(workers, work_seconds, model_latency_ms=0.0, model_latency_sd_ms=0.0, **options)
