"""Local systems set up for measuring: free ports, the offline model, quiet logs, the master's limits lifted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.system.ha import HaCluster
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
    "LIFTED_CONNECTIONS",
    "LIFTED_LIMIT",
    "UNLIMITED_SESSIONS",
    "addresses_unlimited",
    "lab_cluster",
    "limits_lifted",
    "measurement_cluster",
    "queue_unbounded",
    "sessions_unlimited",
]

# The offline model's latency when it stands in for Gemini: a Flash model answers a short question in
# about 1-2 s. Lognormal with this mean and spread (see services/worker/models.py).
GEMINI_LIKE_LATENCY_MS = 1500.0
JOURNALS = ("sqlite", "etcd")  # one master with its SQLite journal, or standby masters on etcd (HaCluster)
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


LIFTED_CONNECTIONS = 10_000
"""Connections, in all and per address, more than the lab's load generators open from one machine (each of
its clients needs an open file too, and the master holds this many files only where `ulimit -n` allows)."""


def addresses_unlimited(questions: int = LIFTED_LIMIT) -> dict[str, str]:
    """The master's environment with its limits per client address and on connections lifted: a load generator
    opens many sessions from one address (127.0.0.1) on purpose. Questions per minute and unanswered questions
    per address are allowed up to `questions` or LIFTED_LIMIT, whichever is more; connections, in all and per
    address, up to LIFTED_CONNECTIONS."""
    limit = max(questions, LIFTED_LIMIT)
    return MasterSettings.env_of(
        max_connections=LIFTED_CONNECTIONS,
        max_connections_per_address=LIFTED_CONNECTIONS,
        rate_per_minute_per_address=limit,
        max_in_flight_per_address=limit,
    )


def queue_unbounded() -> dict[str, str]:
    """The master's environment without the queue's bound (LATENCY_TARGET_SECONDS=0): a measurement that
    saturates on purpose (a burst, a sweep past 90 % load) must see the queue grow, not questions refused."""
    return MasterSettings.env_of(latency_target_seconds=0.0)


def limits_lifted(questions: int = LIFTED_LIMIT) -> dict[str, str]:
    """`sessions_unlimited`, `addresses_unlimited` and `queue_unbounded` together: every limit of the master that
    a load generator would hit but people would not."""
    return {**sessions_unlimited(questions), **addresses_unlimited(questions), **queue_unbounded()}


def lab_cluster(
    workers: FleetSpec,
    work_seconds: float = 10.0,
    model_latency_ms: float = GEMINI_LIKE_LATENCY_MS,
    model_latency_sd_ms: float = GEMINI_LIKE_SD_MS,
    journal: str = "sqlite",
    **options: Unpack[ServiceOptions],
) -> LocalCluster:
    """A local system for experiments: free ports, the offline model at the given latency, quiet logs, the
    master's limits lifted (`limits_lifted`: per session, per address, the queue's bound), and the per-task
    messages on MQTT (TASK_MESSAGES=true: the workers' busy and idle, the results topic) for the collectors'
    second view. `journal`: `sqlite` (one master) or `etcd` (HaCluster: three standby masters on etcd behind
    HAProxy). `options` are further `ClusterSpec` fields; `extra_env` is added to the preset's."""
    if journal not in JOURNALS:
        raise ValueError(f"journal must be one of {', '.join(JOURNALS)}, got {journal!r}")
    env = {
        **ServiceSettings.env_of(log_level="WARNING"),
        **WorkerSettings.env_of(offline_latency_ms=model_latency_ms, offline_latency_sd_ms=model_latency_sd_ms),
        **limits_lifted(),
        **MasterSettings.env_of(task_messages=True),
    }
    env.update(options.get("extra_env") or {})
    options["extra_env"] = env
    options.setdefault("log_sink", lambda name, line: None)
    spec = ClusterSpec(
        workers=workers, work_seconds=work_seconds, web_port=0, grpc_port=0, mqtt_port=0, model_mode="offline"
    )
    return HaCluster(spec, **options) if journal == "etcd" else LocalCluster(spec, **options)


def measurement_cluster(
    workers: FleetSpec, work_seconds: float = 0.0, journal: str = "sqlite", **options: Unpack[ServiceOptions]
) -> LocalCluster:
    """`lab_cluster` with a model that answers at once, and no per-task messages on MQTT (the master's default,
    as deployed): measuring clients time the system, not a model nor the lab's second view."""
    options["extra_env"] = {**MasterSettings.env_of(task_messages=False), **(options.get("extra_env") or {})}
    return lab_cluster(workers, work_seconds, model_latency_ms=0.0, model_latency_sd_ms=0.0, journal=journal, **options)
