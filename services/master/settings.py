"""The master's settings, read from the environment once, in `__main__`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.envconfig import HOST_PATTERN, Alias, Env, ServiceSettings, setting

DEFAULT_GRPC_PORT = 50051
GRPC_PORT = "GRPC_PORT"
MASTER_HOST = "MASTER_HOST"
JOURNAL_BACKENDS = ("sqlite", "etcd")


def callback_endpoint(env: Env) -> str | None:
    """The original system's callback, `MASTER_HOST` with `GRPC_PORT`, as GRPC_ENDPOINT's host:port (None when
    MASTER_HOST is unset)."""
    host = env.optional(MASTER_HOST)
    if host is None:
        return None
    if not re.fullmatch(HOST_PATTERN, host):
        raise ValueError(f"{MASTER_HOST} must be a host name or address, got {host!r}")
    return f"{host}:{env.port(GRPC_PORT, DEFAULT_GRPC_PORT)}"


@dataclass(frozen=True)
class MasterSettings(ServiceSettings):
    """Everything the master can be told; see the README's configuration table.

    Each field names its environment variable once (`setting(...)`); the broker's, the log level and the event
    loop are `ServiceSettings`'. `MasterSettings.from_env()` reads them, `to_env()` renders them back."""

    web_host: str = setting("WEB_HOST", "0.0.0.0")
    web_port: int = setting("WEB_PORT", 8888, Env.port)
    grpc_host: str = setting("GRPC_HOST", "0.0.0.0")
    grpc_port: int = setting(GRPC_PORT, DEFAULT_GRPC_PORT, Env.port)
    # The original system's MASTER_HOST (with GRPC_PORT) stands for it when it is unset.
    grpc_endpoint: str = setting(
        "GRPC_ENDPOINT",
        "",
        Env.matching,
        aliases=(Alias((MASTER_HOST, GRPC_PORT), callback_endpoint),),
        pattern=r"[^\s:]+:\d{1,5}",
        what="host:port",
    )
    max_query_chars: int = setting("MAX_QUERY_CHARS", 8000, Env.integer, minimum=1)
    max_attempts: int = setting("MAX_ATTEMPTS", 3, Env.integer, minimum=1)
    allow_baseline_workers: bool = setting("ALLOW_BASELINE_WORKERS", False, Env.boolean)
    journal_path: str = setting("JOURNAL_PATH", "journal.sqlite3")
    lease_seconds: float = setting("LEASE_SECONDS", 60.0, Env.number, minimum=0.1)
    forget_workers_after_seconds: float = setting("FORGET_WORKERS_AFTER_SECONDS", 30.0, Env.number, minimum=0.0)
    answer_retention_seconds: float = setting("ANSWER_RETENTION_SECONDS", 3600.0, Env.number)
    rate_per_minute: int = setting("RATE_PER_MINUTE", 30, Env.integer, minimum=1)
    max_in_flight_per_session: int = setting("MAX_IN_FLIGHT_PER_SESSION", 10, Env.integer, minimum=1)
    cors_origins: tuple[str, ...] = setting("CORS_ORIGINS", (), Env.words)
    # The journal's key for users' API keys at rest (a Docker secret, JOURNAL_KEY_FILE); without one, users'
    # keys are kept in memory only.
    journal_key: str | None = setting("JOURNAL_KEY", None, Env.secret, file_field="journal_key_file", repr=False)
    journal_key_file: str | None = None
    # The journal key before a rotation: opens what it sealed, which is sealed again with JOURNAL_KEY at start.
    journal_key_previous: str | None = setting(
        "JOURNAL_KEY_PREVIOUS", None, Env.secret, file_field="journal_key_previous_file", repr=False
    )
    journal_key_previous_file: str | None = None
    # The token of the operator views (/metrics, /api/status, /dashboard): a Docker secret, OPERATOR_TOKEN_FILE.
    operator_token: str | None = setting(
        "OPERATOR_TOKEN", None, Env.secret, file_field="operator_token_file", repr=False
    )
    operator_token_file: str | None = None
    # Limits per client address (behind TRUSTED_PROXY_HOPS proxies that append to X-Forwarded-For) and per master.
    trusted_proxy_hops: int = setting("TRUSTED_PROXY_HOPS", 0, Env.integer, minimum=0)
    max_connections: int = setting("MAX_CONNECTIONS", 2000, Env.integer, minimum=1)
    max_connections_per_address: int = setting("MAX_CONNECTIONS_PER_ADDRESS", 100, Env.integer, minimum=1)
    rate_per_minute_per_address: int = setting("RATE_PER_MINUTE_PER_ADDRESS", 120, Env.integer, minimum=1)
    max_in_flight_per_address: int = setting("MAX_IN_FLIGHT_PER_ADDRESS", 50, Env.integer, minimum=1)
    # Refuse a question whose predicted wait would break the latency target (seconds per task); 0 turns it off.
    latency_target_seconds: float = setting("LATENCY_TARGET_SECONDS", 15.0, Env.number, minimum=0.0)
    # Per-task messages on MQTT (the results summary, per-task log lines, and the workers' busy/idle and log lines):
    # nothing decides on them, and the lab's collectors take the same facts from the Watch stream. Off: lean.
    task_messages: bool = setting("TASK_MESSAGES", False, Env.boolean)
    # Socket.IO and HTTP in a process of their own, the web front (services.master.front), beside the core that
    # decides: the master uses two cores (peer benchmark: 1.49x Celery's throughput against 1.19x in one process).
    web_process: bool = setting("WEB_PROCESS", True, Env.boolean)
    grpc_tls_cert: str | None = setting("GRPC_TLS_CERT", None, Env.existing_file)
    grpc_tls_key: str | None = setting("GRPC_TLS_KEY", None, Env.existing_file)
    # Standby masters (DEPLOY.md): the journal in etcd, where masters campaign for the leadership; only the leader
    # serves. `sqlite` (JOURNAL_PATH) is one master alone.
    journal_backend: str = setting("JOURNAL_BACKEND", "sqlite", Env.choice, options=JOURNAL_BACKENDS)
    etcd_endpoints: tuple[str, ...] = setting("ETCD_ENDPOINTS", (), Env.words)
    etcd_prefix: str = setting("ETCD_PREFIX", "/swarm-ai-lab", Env.matching, pattern=r"/[^\s]*", what="a key prefix")
    # The leader's lease: a leader that cannot renew it for this long stops leading, and a standby takes over
    # after it (so it bounds the failover from below). At least 3 s: an etcd election can take 2 s.
    etcd_lease_seconds: int = setting("ETCD_LEASE_SECONDS", 5, Env.integer, minimum=3, maximum=60)
    # The least time between two journal transactions (their batch grows meanwhile): etcd's CPU follows the number
    # of transactions, a question's latency the wait. 0: each as soon as the previous one is done.
    etcd_commit_floor_ms: float = setting("ETCD_COMMIT_FLOOR_MS", 5.0, Env.number, minimum=0.0)
    etcd_ca: str | None = setting("ETCD_CA", None, Env.existing_file)
    etcd_cert: str | None = setting("ETCD_CERT", None, Env.existing_file)
    etcd_key: str | None = setting("ETCD_KEY", None, Env.existing_file)
    # One stateless broker per node (issue 20): the master connects to every broker these host:port items resolve
    # to (all their IPv4 addresses, looked up again every few seconds) and sends each worker's tasks through the
    # broker it is on. Empty: the one broker MQTT_HOST:MQTT_PORT.
    mqtt_brokers: tuple[str, ...] = setting("MQTT_BROKERS", (), Env.words)
    # The name a master campaigns with (in /leader, its logs and etcd); empty: host name and process id.
    master_name: str = setting("MASTER_NAME", "")

    def __post_init__(self) -> None:
        if bool(self.grpc_tls_cert) != bool(self.grpc_tls_key):
            cert, key = self.env_name("grpc_tls_cert"), self.env_name("grpc_tls_key")
            raise ValueError(f"{cert} and {key} go together: set both or neither")
        if self.journal_backend == "etcd" and not self.etcd_endpoints:
            raise ValueError(f"{self.env_name('journal_backend')}=etcd needs {self.env_name('etcd_endpoints')}")
        for endpoint in self.etcd_endpoints:
            if not re.fullmatch(r"[^\s:/]+:\d{1,5}", endpoint):
                raise ValueError(f"{self.env_name('etcd_endpoints')} holds host:port items, got {endpoint!r}")
        for broker in self.mqtt_brokers:
            port = broker.rpartition(":")[2]
            if not re.fullmatch(r"[^\s:/]+:\d{1,5}", broker) or not 0 < int(port) < 65536:
                raise ValueError(f"{self.env_name('mqtt_brokers')} holds host:port items, got {broker!r}")
        if bool(self.etcd_cert) != bool(self.etcd_key):
            cert, key = self.env_name("etcd_cert"), self.env_name("etcd_key")
            raise ValueError(f"{cert} and {key} go together: set both or neither")
        if self.etcd_cert and not self.etcd_ca:
            raise ValueError(f"{self.env_name('etcd_cert')} needs {self.env_name('etcd_ca')} (TLS to etcd)")

    @property
    def standby(self) -> bool:
        """Whether this master is one of several that campaign in etcd (JOURNAL_BACKEND=etcd)."""
        return self.journal_backend == "etcd"

    @property
    def advertised_grpc_endpoint(self) -> str:
        """The host:port workers call back: GRPC_ENDPOINT, else MASTER_HOST:GRPC_PORT, else loopback and the gRPC
        port."""
        return self.grpc_endpoint or f"127.0.0.1:{self.grpc_port}"
