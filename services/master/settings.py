"""The master's settings, read from the environment once, in `__main__`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.protocol.topics import DEFAULT_PREFIX


def env_bool(value: str | None, default: bool) -> bool:
    """Read a boolean setting: 1/true/yes/on or 0/false/no/off (any case)."""
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


@dataclass(frozen=True)
class MasterSettings:
    """Everything the master can be told; see the README's configuration table."""

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    topic_prefix: str = DEFAULT_PREFIX
    web_host: str = "0.0.0.0"
    web_port: int = 8888
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051
    grpc_endpoint: str = ""
    max_query_chars: int = 8000
    max_attempts: int = 3
    allow_baseline_workers: bool = False
    log_level: str = "INFO"

    @property
    def advertised_grpc_endpoint(self) -> str:
        """The host:port workers call back; defaults to loopback and the gRPC port."""
        return self.grpc_endpoint or f"127.0.0.1:{self.grpc_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MasterSettings:
        """Build settings from environment variables, failing clearly on a bad value."""
        e = os.environ if env is None else env
        d = cls()

        def num(name: str, default: int) -> int:
            raw = e.get(name, "")
            try:
                return int(raw) if raw.strip() else default
            except ValueError:
                raise ValueError(f"{name} must be an integer, got {raw!r}") from None

        try:
            allow = env_bool(e.get("ALLOW_BASELINE_WORKERS"), d.allow_baseline_workers)
        except ValueError as err:
            raise ValueError(f"ALLOW_BASELINE_WORKERS: {err}") from None
        settings = cls(
            mqtt_host=e.get("MQTT_HOST", d.mqtt_host) or d.mqtt_host,
            mqtt_port=num("MQTT_PORT", d.mqtt_port),
            topic_prefix=e.get("TOPIC_PREFIX", d.topic_prefix) or d.topic_prefix,
            web_host=e.get("WEB_HOST", d.web_host) or d.web_host,
            web_port=num("WEB_PORT", d.web_port),
            grpc_host=e.get("GRPC_HOST", d.grpc_host) or d.grpc_host,
            grpc_port=num("GRPC_PORT", d.grpc_port),
            grpc_endpoint=e.get("GRPC_ENDPOINT", ""),
            max_query_chars=num("MAX_QUERY_CHARS", d.max_query_chars),
            max_attempts=num("MAX_ATTEMPTS", d.max_attempts),
            allow_baseline_workers=allow,
            log_level=(e.get("LOG_LEVEL", d.log_level) or d.log_level).upper(),
        )
        if settings.max_query_chars < 1 or settings.max_attempts < 1:
            raise ValueError("MAX_QUERY_CHARS and MAX_ATTEMPTS must be at least 1")
        return settings
