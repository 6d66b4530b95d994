"""What a local cluster is made of: resolved ports and the environment of each service process."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.system.broker import BrokerTls, write_config
from lab.system.credentials import Credentials, User, new_operator_token
from lab.system.ports import free_port
from services.envconfig import ServiceSettings, file_variable
from services.master.settings import MasterSettings
from services.protocol.topics import DEFAULT_PREFIX, Topics
from services.worker.settings import MODEL_MODES, WorkerSettings, new_worker_id

__all__ = ["MODEL_MODES", "ClusterConfig", "new_worker_id", "resolve_port"]

# The services' own defaults, so `lab up` with no options matches a service started with no settings.
DEFAULT_WEB_PORT = MasterSettings.web_port
DEFAULT_GRPC_PORT = MasterSettings.grpc_port
DEFAULT_MQTT_PORT = MasterSettings.mqtt_port
DEFAULT_WORK_SECONDS = WorkerSettings.work_seconds
DEFAULT_MODEL_MODE = WorkerSettings.model_mode


def resolve_port(port: int, host: str) -> int:
    """`port` itself, or a free port on `host` when it is 0."""
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port {port}")
    return port or free_port(host)


# The login and the broker's CA a service might find in the shell: the lab decides them, so they are dropped.
_LOGIN_VARIABLES = (
    ServiceSettings.env_name("mqtt_username"),
    ServiceSettings.env_name("mqtt_password"),
    file_variable(ServiceSettings.env_name("mqtt_password")),
    ServiceSettings.env_name("mqtt_tls_ca"),
)
# Not a setting of ours: Python's own, so that lines reach the log stream as they are written.
_UNBUFFERED = {"PYTHONUNBUFFERED": "1"}


def _new_journal_key() -> str:
    """A fresh JOURNAL_KEY: the base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of one local cluster, with concrete ports (0 already replaced by a free one)."""

    web_port: int
    grpc_port: int
    mqtt_port: int
    host: str = "127.0.0.1"
    topic_prefix: str = DEFAULT_PREFIX
    work_seconds: float = DEFAULT_WORK_SECONDS
    model_mode: str = DEFAULT_MODEL_MODE
    extra_env: Mapping[str, str] = field(default_factory=dict)
    auth: bool = True
    """Whether the broker requires the users and ACL of `credentials` (else it admits anyone)."""
    credentials: Credentials = field(default_factory=Credentials)
    """Random passwords of this cluster's MQTT users (the services get theirs only with `auth`)."""
    operator_token: str = field(default_factory=new_operator_token, repr=False)
    """The master's OPERATOR_TOKEN (/metrics, /api/status, the dashboard): random per cluster, in the master's
    environment only (never on a command line, never logged)."""
    journal_key: str = field(default_factory=_new_journal_key, repr=False)
    """The master's JOURNAL_KEY (users' API keys sealed in the journal): random per cluster, in the master's
    environment only (never in the state directory), the same for a restarted master."""
    broker_tls: BrokerTls | None = None
    """The broker's TLS files: its listener speaks only TLS, and the services verify it against the CA."""
    baseline: bool = False
    """Baseline mode: the original system's workers may join (anonymous MQTT clients with the ACL's baseline
    rules; the master accepts results without task id and token, ALLOW_BASELINE_WORKERS=true)."""

    def __post_init__(self) -> None:
        for name in ("web_port", "grpc_port", "mqtt_port"):
            port = getattr(self, name)
            if not 0 < port <= 65535:
                raise ValueError(f"{name} must be a concrete port, got {port}")
        if self.model_mode not in MODEL_MODES:
            raise ValueError(f"model_mode must be one of {', '.join(MODEL_MODES)}, got {self.model_mode!r}")
        if self.work_seconds < 0:
            raise ValueError(f"work_seconds must be >= 0, got {self.work_seconds}")
        Topics(self.topic_prefix)  # raises ValueError on an invalid prefix

    @classmethod
    def resolve(  # noqa: PLR0913 (keyword-only, one per field of the config it makes)
        cls,
        *,
        web_port: int,
        grpc_port: int,
        mqtt_port: int,
        host: str = "127.0.0.1",
        topic_prefix: str = DEFAULT_PREFIX,
        work_seconds: float = DEFAULT_WORK_SECONDS,
        model_mode: str = DEFAULT_MODEL_MODE,
        extra_env: Mapping[str, str] | None = None,
        auth: bool = True,
        broker_tls: BrokerTls | None = None,
        baseline: bool = False,
    ) -> ClusterConfig:
        """A config where every port given as 0 is replaced by a free port on `host` (and TLS file paths
        are made absolute)."""
        return cls(
            web_port=resolve_port(web_port, host),
            grpc_port=resolve_port(grpc_port, host),
            mqtt_port=resolve_port(mqtt_port, host),
            host=host,
            topic_prefix=topic_prefix,
            work_seconds=work_seconds,
            model_mode=model_mode,
            extra_env=dict(extra_env or {}),
            auth=auth,
            broker_tls=None if broker_tls is None else broker_tls.absolute(),
            baseline=baseline,
        )

    @property
    def web_url(self) -> str:
        """The master's HTTP base URL (chat page, /api/status)."""
        return f"http://{self.host}:{self.web_port}"

    @property
    def grpc_endpoint(self) -> str:
        """host:port where workers send results back to the master."""
        return f"{self.host}:{self.grpc_port}"

    def ports(self) -> dict[str, int]:
        """The ports the cluster listens on, by role."""
        return {"MQTT": self.mqtt_port, "web": self.web_port, "gRPC": self.grpc_port}

    def write_broker_config(self, state_dir: Path) -> Path:
        """Write the broker's config, its password file and ACL (with `auth`) and its data directory (sessions and
        queued messages kept across restarts) into `state_dir`/broker; return the config's path."""
        directory = state_dir / "broker"
        directory.mkdir(mode=0o700, exist_ok=True)
        return write_config(
            directory,
            self.mqtt_port,
            self.host,
            topic_prefix=self.topic_prefix,
            credentials=self.credentials if self.auth else None,
            persistence=True,
            tls=self.broker_tls,
            baseline=self.baseline,
        )

    def _common_env(self, base: Mapping[str, str], user: User) -> dict[str, str]:
        """What every service process gets: `base`, the broker and its login as `user`, the result endpoint."""
        env = dict(base)
        # Whatever the shell says, a service logs in only as the lab tells it to (or not at all).
        # Likewise it speaks TLS exactly when the lab's broker does.
        for name in _LOGIN_VARIABLES:
            env.pop(name, None)
        if self.auth:
            username, password = self.credentials.login(user)
            env.update(ServiceSettings.env_of(mqtt_username=username, mqtt_password=password))
        if self.broker_tls is not None:
            env.update(ServiceSettings.env_of(mqtt_tls_ca=str(self.broker_tls.ca)))
        env.update(
            ServiceSettings.env_of(mqtt_host=self.host, mqtt_port=self.mqtt_port, topic_prefix=self.topic_prefix)
        )
        env.update(_UNBUFFERED)  # lines reach the log stream as they are written, not when a pipe buffer fills
        return env

    def master_env(self, base: Mapping[str, str], journal_path: Path | None = None) -> dict[str, str]:
        """The master's environment: `base`, then the cluster's settings, then extra_env."""
        env = self._common_env(base, "master")
        env.pop(file_variable(MasterSettings.env_name("operator_token")), None)  # the shell's would be ignored anyway
        env.update(MasterSettings.env_of(operator_token=self.operator_token))
        env.pop(file_variable(MasterSettings.env_name("journal_key")), None)  # ours wins over the shell's
        env.update(MasterSettings.env_of(journal_key=self.journal_key))
        if journal_path is not None:
            env.update(MasterSettings.env_of(journal_path=str(journal_path)))
        env.update(
            MasterSettings.env_of(
                # Bind where the lab connects, not 0.0.0.0: a local lab should not be reachable from outside.
                web_host=self.host,
                web_port=self.web_port,
                grpc_host=self.host,
                grpc_port=self.grpc_port,
                grpc_endpoint=self.grpc_endpoint,  # where the workers send results back
            )
        )
        if self.baseline:
            env.update(MasterSettings.env_of(allow_baseline_workers=True))
        env.update(self.extra_env)
        return env

    def worker_env(self, worker_id: str, base: Mapping[str, str], health_file: Path | None = None) -> dict[str, str]:
        """A worker's environment: `base`, then the cluster's settings and its id, then extra_env, then its own
        heartbeat file for `--check` if one is given (workers that share a filesystem need one each)."""
        env = self._common_env(base, "worker")
        # 10.0 s is written "10": the settings render a number as its shortest text.
        env.update(
            WorkerSettings.env_of(worker_id=worker_id, work_seconds=self.work_seconds, model_mode=self.model_mode)
        )
        env.update(self.extra_env)
        if health_file is not None:
            env.update(WorkerSettings.env_of(health_file=str(health_file)))
        return env

    def broker_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Mosquitto's environment: `base` with extra_env (it reads nothing of ours)."""
        env = dict(base)
        env.update(self.extra_env)
        return env
