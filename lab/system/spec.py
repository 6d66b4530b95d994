"""What a `LocalCluster` is asked to be: one frozen object instead of seventeen constructor arguments."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from lab.system.autoscaling import Autoscale, check_autoscale
from lab.system.broker import BrokerTls
from lab.system.config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_MODEL_MODE,
    DEFAULT_MQTT_PORT,
    DEFAULT_WEB_PORT,
    DEFAULT_WORK_SECONDS,
    ClusterConfig,
)
from lab.system.procs import LogSink
from lab.system.supervision import RestartPolicy
from lab.system.workers import Fleet, FleetSpec, fleet_text, parse_fleet
from services.protocol.topics import DEFAULT_PREFIX

__all__ = ["ClusterOptions", "ClusterSpec", "ServiceOptions"]


@dataclass(frozen=True)
class ClusterSpec:
    """A local cluster to start: its workers (a number of Python workers, or a fleet such as
    `"python=2,go=2,java=2"`: lab.system.workers), ports (0: a free one, chosen when the cluster is created),
    the services' settings, and how the lab looks after it.

    `log_sink` receives every process's output lines; `on_event` the lab's own messages (what it
    restarted), by default sent to the log sink as process `lab`. With `auth`, the broker admits only the
    cluster's users; with `broker_tls` it speaks only TLS. With `baseline`, the original system's workers may
    join too: anonymous clients with the ACL's baseline rules, and the master accepts their token-less
    results. With `restart`, what dies is started again (`restart_policy`). `state_dir` holds the broker's
    files and the journal; by default a new temporary directory, removed by stop() (a given one is kept).
    With `autoscale` (min, max), the cluster starts the autoscaler instead of the workers: it starts and stops
    workers of the fleet's one language (Python for a number) between min and max (lab.system.autoscaling).
    """

    workers: FleetSpec = 2
    work_seconds: float = DEFAULT_WORK_SECONDS
    web_port: int = DEFAULT_WEB_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    mqtt_port: int = DEFAULT_MQTT_PORT
    host: str = "127.0.0.1"
    topic_prefix: str = DEFAULT_PREFIX
    model_mode: str = DEFAULT_MODEL_MODE
    extra_env: Mapping[str, str] | None = None
    log_sink: LogSink | None = None
    startup_timeout: float = 30.0
    auth: bool = True
    broker_tls: BrokerTls | None = None
    baseline: bool = False
    restart: bool = True
    restart_policy: RestartPolicy | None = None
    on_event: Callable[[str], None] | None = None
    state_dir: Path | None = None
    autoscale: Autoscale | None = None

    def __post_init__(self) -> None:
        fleet = parse_fleet(self.workers)  # a bad fleet fails here, before anything starts
        if self.autoscale is not None:
            check_autoscale(self.autoscale)
            if len(fleet) > 1:
                raise ValueError(f"autoscale sizes workers of one language, not a mix ({fleet_text(fleet)})")

    @property
    def autoscale_language(self) -> str:
        """The language of the autoscaled workers: the fleet's (Python for a number)."""
        fleet = self.fleet
        return fleet[0][0] if fleet else "python"

    @property
    def fleet(self) -> Fleet:
        """The workers by language (a bare number of workers is Python)."""
        return parse_fleet(self.workers)

    def resolve(self) -> ClusterConfig:
        """The services' side of this spec with concrete ports (0 replaced by a free port now)."""
        return ClusterConfig.resolve(
            web_port=self.web_port,
            grpc_port=self.grpc_port,
            mqtt_port=self.mqtt_port,
            host=self.host,
            topic_prefix=self.topic_prefix,
            work_seconds=self.work_seconds,
            model_mode=self.model_mode,
            extra_env=self.extra_env,
            auth=self.auth,
            broker_tls=self.broker_tls,
            baseline=self.baseline,
        )


class ServiceOptions(TypedDict, total=False):
    """`ClusterSpec`'s fields but the workers and their work time, as keyword arguments (the presets take
    those two as parameters of their own)."""

    web_port: int
    grpc_port: int
    mqtt_port: int
    host: str
    topic_prefix: str
    model_mode: str
    extra_env: Mapping[str, str] | None
    log_sink: LogSink | None
    startup_timeout: float
    auth: bool
    broker_tls: BrokerTls | None
    baseline: bool
    restart: bool
    restart_policy: RestartPolicy | None
    on_event: Callable[[str], None] | None
    state_dir: Path | None
    autoscale: Autoscale | None


class ClusterOptions(ServiceOptions, total=False):
    """`ClusterSpec`'s fields as keyword arguments (``LocalCluster(workers=2, ...)``), so they stay typed;
    a unit test keeps the two lists equal."""

    workers: FleetSpec
    work_seconds: float
