"""The worker's settings, read from the environment once, in `__main__`."""

from __future__ import annotations

from dataclasses import dataclass

from services.envconfig import Env, ServiceSettings, setting
from services.protocol.messages import WORKER_ID_PATTERN
from services.protocol.worker_ids import make_worker_id

LANGUAGE = "python"
MODEL_MODES = ("auto", "gemini", "offline")
DEFAULT_GEMINI_MODEL = "gemini-flash-latest"
DEFAULT_HEALTH_FILE = "/tmp/swarm-ai-lab-worker.health"


def new_worker_id() -> str:
    """A baseline-style worker id: `python-worker-<6 hex>`."""
    return make_worker_id(LANGUAGE)


@dataclass(frozen=True)
class WorkerSettings(ServiceSettings):
    """Everything the worker can be told; see the README's configuration table.

    Each field names its environment variable once (`setting(...)`); the broker's, the log level and the event
    loop are `ServiceSettings`'. `WorkerSettings.from_env()` reads them, `to_env()` renders them back."""

    worker_id: str = setting(
        "WORKER_ID",
        read=Env.matching,
        factory=new_worker_id,
        pattern=WORKER_ID_PATTERN,
        what="letters, digits and _.:- (at most 128)",
    )
    work_seconds: float = setting("WORK_SECONDS", 10.0, Env.number)
    model_mode: str = setting("MODEL_MODE", "auto", Env.choice, options=MODEL_MODES)
    # The key itself stays out of repr; the worker reads GEMINI_API_KEY_FILE itself, when it starts.
    gemini_api_key: str | None = setting("GEMINI_API_KEY", None, Env.optional, repr=False)
    gemini_api_key_file: str | None = setting("GEMINI_API_KEY_FILE", None, Env.optional)
    gemini_model: str = setting("GEMINI_MODEL", DEFAULT_GEMINI_MODEL)
    gemini_base_url: str | None = setting("GEMINI_BASE_URL", None, Env.optional)
    gemini_timeout_seconds: float = setting("GEMINI_TIMEOUT_SECONDS", 30.0, Env.number, minimum=0.001)
    offline_latency_ms: float = setting("OFFLINE_LATENCY_MS", 0.0, Env.number)
    offline_latency_sd_ms: float = setting("OFFLINE_LATENCY_SD_MS", 0.0, Env.number)
    grpc_retries: int = setting("GRPC_RETRIES", 6, Env.integer)
    result_stream: bool = setting("RESULT_STREAM", True, Env.boolean)
    grpc_tls_ca: str | None = setting("GRPC_TLS_CA", None, Env.existing_file)
    # The heartbeat file of `--check`; workers sharing a host need one each.
    health_file: str = setting("HEALTH_FILE", DEFAULT_HEALTH_FILE)
