"""A system to measure: a local cluster of real processes (broker, master, workers) with its config,
presets and supervision, or a running system attached to by URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab._lazy import lazy_exports

if TYPE_CHECKING:
    from lab.system.broker import MosquittoNotFoundError
    from lab.system.config import ClusterConfig
    from lab.system.local import LocalCluster
    from lab.system.presets import lab_cluster, measurement_cluster
    from lab.system.readiness import ClusterStartError
    from lab.system.spec import ClusterSpec
    from lab.system.target import AttachError, Target, attach
    from lab.system.workers import WorkerUnavailableError, parse_fleet, worker_kind

__all__ = [
    "AttachError",
    "ClusterConfig",
    "ClusterSpec",
    "ClusterStartError",
    "LocalCluster",
    "MosquittoNotFoundError",
    "Target",
    "WorkerUnavailableError",
    "attach",
    "lab_cluster",
    "measurement_cluster",
    "parse_fleet",
    "worker_kind",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AttachError": "target",
        "ClusterConfig": "config",
        "ClusterSpec": "spec",
        "ClusterStartError": "readiness",
        "LocalCluster": "local",
        "MosquittoNotFoundError": "broker",
        "Target": "target",
        "attach": "target",
        "lab_cluster": "presets",
        "measurement_cluster": "presets",
        "parse_fleet": "workers",
        "worker_kind": "workers",
        "WorkerUnavailableError": "workers",
    },
)
