"""The master's settings, read from the environment once, in `__main__`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.envconfig import Env
from services.loop import CHOICES as LOOP_CHOICES
from services.protocol.topics import DEFAULT_PREFIX


@dataclass(frozen=True)
class MasterSettings:
    """Everything the master can be told; see the README's configuration table."""

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    topic_prefix: str = DEFAULT_PREFIX
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_tls_ca: str | None = None
    mqtt_keepalive: int = 5
    web_host: str = "0.0.0.0"
    web_port: int = 8888
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051
    grpc_endpoint: str = ""
    max_query_chars: int = 8000
    max_attempts: int = 3
    allow_baseline_workers: bool = False
    log_level: str = "INFO"
    event_loop: str = "auto"
    journal_path: str = "journal.sqlite3"
    lease_seconds: float = 60.0
    answer_retention_seconds: float = 3600.0
    rate_per_minute: int = 30
    max_in_flight_per_session: int = 10
    cors_origins: tuple[str, ...] = ()
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None

    def __post_init__(self) -> None:
        if bool(self.grpc_tls_cert) != bool(self.grpc_tls_key):
            raise ValueError("GRPC_TLS_CERT and GRPC_TLS_KEY go together: set both or neither")

    @property
    def advertised_grpc_endpoint(self) -> str:
        """The host:port workers call back; defaults to loopback and the gRPC port."""
        return self.grpc_endpoint or f"127.0.0.1:{self.grpc_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MasterSettings:
        """Build settings from environment variables, failing clearly on a bad value."""
        e, d = Env(env), cls()
        return cls(
            mqtt_host=e.text("MQTT_HOST", d.mqtt_host),
            mqtt_port=e.port("MQTT_PORT", d.mqtt_port),
            topic_prefix=e.topic_prefix("TOPIC_PREFIX", d.topic_prefix),
            mqtt_username=e.optional("MQTT_USERNAME"),
            mqtt_password=e.secret("MQTT_PASSWORD"),
            mqtt_tls_ca=e.existing_file("MQTT_TLS_CA"),
            mqtt_keepalive=e.integer("MQTT_KEEPALIVE", d.mqtt_keepalive, minimum=1, maximum=3600),
            web_host=e.text("WEB_HOST", d.web_host),
            web_port=e.port("WEB_PORT", d.web_port),
            grpc_host=e.text("GRPC_HOST", d.grpc_host),
            grpc_port=e.port("GRPC_PORT", d.grpc_port),
            grpc_endpoint=e.matching("GRPC_ENDPOINT", "", r"[^\s:]+:\d{1,5}", "host:port"),
            max_query_chars=e.integer("MAX_QUERY_CHARS", d.max_query_chars, minimum=1),
            max_attempts=e.integer("MAX_ATTEMPTS", d.max_attempts, minimum=1),
            allow_baseline_workers=e.boolean("ALLOW_BASELINE_WORKERS", d.allow_baseline_workers),
            log_level=e.text("LOG_LEVEL", d.log_level).upper(),
            event_loop=e.choice("EVENT_LOOP", d.event_loop, LOOP_CHOICES),
            journal_path=e.text("JOURNAL_PATH", d.journal_path),
            lease_seconds=e.number("LEASE_SECONDS", d.lease_seconds, minimum=0.1),
            answer_retention_seconds=e.number("ANSWER_RETENTION_SECONDS", d.answer_retention_seconds),
            rate_per_minute=e.integer("RATE_PER_MINUTE", d.rate_per_minute, minimum=1),
            max_in_flight_per_session=e.integer("MAX_IN_FLIGHT_PER_SESSION", d.max_in_flight_per_session, minimum=1),
            cors_origins=tuple(o.strip() for o in e.text("CORS_ORIGINS", "").split(",") if o.strip()),
            grpc_tls_cert=e.existing_file("GRPC_TLS_CERT"),
            grpc_tls_key=e.existing_file("GRPC_TLS_KEY"),
        )
