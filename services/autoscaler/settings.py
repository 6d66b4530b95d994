"""The autoscaler's settings, read from the environment once, in `__main__`."""

from __future__ import annotations

from dataclasses import dataclass

from services.autoscaler.policy import PolicySettings
from services.envconfig import Env, EnvSettings, setting

ACTUATORS = ("local", "swarm")
WORKER_LANGUAGES = ("python", "go", "java")
# The master's own default web port (MasterSettings.web_port), so that both started with no settings meet.
DEFAULT_MASTER_URL = "http://127.0.0.1:8888"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class AutoscalerSettings(EnvSettings):
    """Everything the autoscaler can be told: where the master is, the bounds and targets of the policy, how
    often to look, and which actuator changes the fleet (`local` worker processes or a `swarm` service).

    The local actuator's workers inherit this process's environment (their broker, work time, model, ...):
    only WORKER_ID, and HEALTH_FILE when set, are their own."""

    master_url: str = setting(
        "MASTER_URL", DEFAULT_MASTER_URL, Env.matching, pattern=r"https?://[^\s/]+(/\S*)?", what="an http(s):// URL"
    )
    # /api/status, /metrics, /api/scaling and the retire endpoint need it: a Docker secret, OPERATOR_TOKEN_FILE.
    operator_token: str | None = setting(
        "OPERATOR_TOKEN", None, Env.secret, file_field="operator_token_file", repr=False
    )
    operator_token_file: str | None = None
    min_workers: int = setting("AUTOSCALE_MIN", 1, Env.integer, minimum=0)
    max_workers: int = setting("AUTOSCALE_MAX", 10, Env.integer, minimum=1)
    latency_target_s: float = setting("LATENCY_TARGET_S", 15.0, Env.number, minimum=0.001)
    utilization_low: float = setting("UTILIZATION_LOW", 0.70, Env.number)
    utilization_high: float = setting("UTILIZATION_HIGH", 0.80, Env.number)
    scale_down_window_s: float = setting("SCALE_DOWN_WINDOW_S", 60.0, Env.number)
    cooldown_s: float = setting("COOLDOWN_S", 10.0, Env.number)
    interval_s: float = setting("AUTOSCALE_INTERVAL_S", 2.0, Env.number, minimum=0.1)
    # How far back the arrival rate and the service times are measured (differences of the master's counters).
    measure_window_s: float = setting("AUTOSCALE_MEASURE_WINDOW_S", 30.0, Env.number, minimum=0.1)
    # The service time assumed until the master has measured one (the workers' default WORK_SECONDS).
    default_service_s: float = setting("AUTOSCALE_DEFAULT_SERVICE_S", 10.0, Env.number, minimum=0.001)
    actuator: str = setting("ACTUATOR", "local", Env.choice, options=ACTUATORS)
    # Swarm: the worker service to scale (e.g. ai-system_worker-python) and the engine to ask.
    swarm_service: str | None = setting("SWARM_SERVICE", None, Env.optional)
    docker_host: str = setting("DOCKER_HOST", DEFAULT_DOCKER_HOST)
    # Local: which worker to start, and (for a worker built elsewhere) the shell-quoted command that starts it.
    worker_language: str = setting("WORKER_LANGUAGE", "python", Env.choice, options=WORKER_LANGUAGES)
    worker_command: str | None = setting("WORKER_COMMAND", None, Env.optional)
    log_level: str = setting("LOG_LEVEL", "INFO", Env.upper)

    def __post_init__(self) -> None:
        token = self.env_name("operator_token")
        if not self.operator_token:
            raise ValueError(
                f"{token} (or {token}_FILE) is required: the autoscaler reads the master's /api/status and /metrics"
            )
        low, high = self.env_name("min_workers"), self.env_name("max_workers")
        if self.min_workers > self.max_workers:
            raise ValueError(f"{low} ({self.min_workers}) must not be above {high} ({self.max_workers})")
        band_low, band_high = self.env_name("utilization_low"), self.env_name("utilization_high")
        if not 0 < self.utilization_low < self.utilization_high < 1:
            raise ValueError(
                f"the utilization band must be 0 < {band_low} < {band_high} < 1, "
                f"got {self.utilization_low:g} and {self.utilization_high:g}"
            )
        if self.actuator == "swarm" and not self.swarm_service:
            raise ValueError(
                f"{self.env_name('actuator')}=swarm needs {self.env_name('swarm_service')}: the worker service to scale"
            )

    def policy(self) -> PolicySettings:
        """The policy's part of these settings."""
        return PolicySettings(
            min_workers=self.min_workers,
            max_workers=self.max_workers,
            latency_target_s=self.latency_target_s,
            utilization_low=self.utilization_low,
            utilization_high=self.utilization_high,
            scale_down_window_s=self.scale_down_window_s,
            cooldown_s=self.cooldown_s,
            default_service_s=self.default_service_s,
        )
