"""The worker's settings, read from the environment once, in `__main__`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.protocol.topics import DEFAULT_PREFIX

LANGUAGE = "python"
MODEL_MODES = ("auto", "gemini", "offline")
DEFAULT_GEMINI_MODEL = "gemini-flash-latest"


def new_worker_id() -> str:
    """A baseline-style worker id: `python-worker-<6 hex>`."""
    return f"{LANGUAGE}-worker-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker can be told; see the README's configuration table."""

    worker_id: str = field(default_factory=new_worker_id)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    topic_prefix: str = DEFAULT_PREFIX
    work_seconds: float = 10.0
    model_mode: str = "auto"
    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_api_key_file: str | None = None
    gemini_model: str = DEFAULT_GEMINI_MODEL
    gemini_base_url: str | None = None
    gemini_timeout_seconds: float = 30.0
    offline_latency_ms: float = 0.0
    offline_latency_sd_ms: float = 0.0
    grpc_retries: int = 6
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Build settings from environment variables, failing clearly on a bad value."""
        e = os.environ if env is None else env
        d = cls(worker_id="default")

        def text(name: str, default: str) -> str:
            return e.get(name, "").strip() or default

        def number(name: str, default: float) -> float:
            raw = e.get(name, "").strip()
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {raw!r}")
            return value

        mode = text("MODEL_MODE", d.model_mode).lower()
        if mode not in MODEL_MODES:
            raise ValueError(f"MODEL_MODE must be one of {', '.join(MODEL_MODES)}, got {mode!r}")
        return cls(
            worker_id=text("WORKER_ID", "") or new_worker_id(),
            mqtt_host=text("MQTT_HOST", d.mqtt_host),
            mqtt_port=int(number("MQTT_PORT", d.mqtt_port)),
            topic_prefix=text("TOPIC_PREFIX", d.topic_prefix),
            work_seconds=number("WORK_SECONDS", d.work_seconds),
            model_mode=mode,
            gemini_api_key=e.get("GEMINI_API_KEY", "").strip() or None,
            gemini_api_key_file=e.get("GEMINI_API_KEY_FILE", "").strip() or None,
            gemini_model=text("GEMINI_MODEL", d.gemini_model),
            gemini_base_url=e.get("GEMINI_BASE_URL", "").strip() or None,
            gemini_timeout_seconds=number("GEMINI_TIMEOUT_SECONDS", d.gemini_timeout_seconds),
            offline_latency_ms=number("OFFLINE_LATENCY_MS", d.offline_latency_ms),
            offline_latency_sd_ms=number("OFFLINE_LATENCY_SD_MS", d.offline_latency_sd_ms),
            grpc_retries=int(number("GRPC_RETRIES", d.grpc_retries)),
            log_level=text("LOG_LEVEL", d.log_level).upper(),
        )
