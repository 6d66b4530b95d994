"""The worker's settings, read from the environment once, in `__main__`."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.envconfig import Env
from services.loop import CHOICES as LOOP_CHOICES
from services.protocol.messages import WORKER_ID_PATTERN
from services.protocol.topics import DEFAULT_PREFIX

LANGUAGE = "python"
MODEL_MODES = ("auto", "gemini", "offline")
DEFAULT_GEMINI_MODEL = "gemini-flash-latest"
DEFAULT_HEALTH_FILE = "/tmp/swarm-ai-lab-worker.health"


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
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_tls_ca: str | None = None
    mqtt_keepalive: int = 5
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
    result_stream: bool = True
    log_level: str = "INFO"
    event_loop: str = "auto"
    grpc_tls_ca: str | None = None
    # The heartbeat file of `--check`; workers sharing a host need one each.
    health_file: str = DEFAULT_HEALTH_FILE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Build settings from environment variables, failing clearly on a bad value."""
        e, d = Env(env), cls(worker_id="default")
        return cls(
            worker_id=e.matching("WORKER_ID", "", WORKER_ID_PATTERN, "letters, digits and _.:- (at most 128)")
            or new_worker_id(),
            mqtt_host=e.text("MQTT_HOST", d.mqtt_host),
            mqtt_port=e.port("MQTT_PORT", d.mqtt_port),
            topic_prefix=e.topic_prefix("TOPIC_PREFIX", d.topic_prefix),
            mqtt_username=e.optional("MQTT_USERNAME"),
            mqtt_password=e.secret("MQTT_PASSWORD"),
            mqtt_tls_ca=e.existing_file("MQTT_TLS_CA"),
            mqtt_keepalive=e.integer("MQTT_KEEPALIVE", d.mqtt_keepalive, minimum=1, maximum=3600),
            work_seconds=e.number("WORK_SECONDS", d.work_seconds),
            model_mode=e.choice("MODEL_MODE", d.model_mode, MODEL_MODES),
            gemini_api_key=e.optional("GEMINI_API_KEY"),
            gemini_api_key_file=e.optional("GEMINI_API_KEY_FILE"),
            gemini_model=e.text("GEMINI_MODEL", d.gemini_model),
            gemini_base_url=e.optional("GEMINI_BASE_URL"),
            gemini_timeout_seconds=e.number("GEMINI_TIMEOUT_SECONDS", d.gemini_timeout_seconds, minimum=0.001),
            offline_latency_ms=e.number("OFFLINE_LATENCY_MS", d.offline_latency_ms),
            offline_latency_sd_ms=e.number("OFFLINE_LATENCY_SD_MS", d.offline_latency_sd_ms),
            grpc_retries=e.integer("GRPC_RETRIES", d.grpc_retries),
            result_stream=e.boolean("RESULT_STREAM", d.result_stream),
            log_level=e.text("LOG_LEVEL", d.log_level).upper(),
            event_loop=e.choice("EVENT_LOOP", d.event_loop, LOOP_CHOICES),
            grpc_tls_ca=e.existing_file("GRPC_TLS_CA"),
            health_file=e.text("HEALTH_FILE", d.health_file),
        )
