"""The autoscaler's settings: read from the environment, checked with messages that name the variable, the
operator token never shown; `python -m services.autoscaler` exits 2 on a bad one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.autoscaler.policy import PolicySettings
from services.autoscaler.settings import AutoscalerSettings

TOKEN = "s3cret-operator-token"
REPO = Path(__file__).resolve().parents[2]


def settings(**env: str) -> AutoscalerSettings:
    return AutoscalerSettings.from_env({"OPERATOR_TOKEN": TOKEN, **env})


def test_defaults_are_the_documented_ones() -> None:
    s = settings()
    assert (s.min_workers, s.max_workers) == (1, 10)
    assert (s.utilization_low, s.utilization_high, s.latency_target_s) == (0.70, 0.80, 15.0)
    assert (s.interval_s, s.cooldown_s, s.scale_down_window_s) == (2.0, 10.0, 60.0)
    assert (s.actuator, s.worker_language) == ("local", "python")
    assert s.master_url == "http://127.0.0.1:8888"  # the master's own default web port


def test_every_variable_is_read() -> None:
    s = settings(
        MASTER_URL="http://master:8888",
        AUTOSCALE_MIN="0",
        AUTOSCALE_MAX="6",
        LATENCY_TARGET_S="12",
        UTILIZATION_LOW="0.6",
        UTILIZATION_HIGH="0.9",
        SCALE_DOWN_WINDOW_S="90",
        COOLDOWN_S="5",
        AUTOSCALE_INTERVAL_S="1.5",
        ACTUATOR="swarm",
        SWARM_SERVICE="ai-system_worker-python",
        DOCKER_HOST="unix:///run/docker.sock",
    )
    assert (s.master_url, s.min_workers, s.max_workers) == ("http://master:8888", 0, 6)
    assert s.policy() == PolicySettings(
        min_workers=0,
        max_workers=6,
        latency_target_s=12.0,
        utilization_low=0.6,
        utilization_high=0.9,
        scale_down_window_s=90.0,
        cooldown_s=5.0,
    )
    assert (s.interval_s, s.actuator, s.swarm_service, s.docker_host) == (
        1.5,
        "swarm",
        "ai-system_worker-python",
        "unix:///run/docker.sock",
    )
    assert AutoscalerSettings.from_env(s.to_env()) == s


def test_the_token_may_come_from_a_file_and_is_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "operator_token"
    path.write_text(TOKEN + "\n")
    s = AutoscalerSettings.from_env({"OPERATOR_TOKEN_FILE": str(path)})
    assert s.operator_token == TOKEN
    assert TOKEN not in repr(s) and TOKEN not in str(s)
    assert s.to_env()["OPERATOR_TOKEN_FILE"] == str(path) and "OPERATOR_TOKEN" not in s.to_env()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTOSCALE_MIN": "5", "AUTOSCALE_MAX": "3"}, "AUTOSCALE_MIN (5) must not be above AUTOSCALE_MAX (3)"),
        ({"AUTOSCALE_MIN": "-1"}, "AUTOSCALE_MIN must be >= 0"),
        ({"AUTOSCALE_MAX": "0"}, "AUTOSCALE_MAX must be >= 1"),
        ({"UTILIZATION_LOW": "0.8", "UTILIZATION_HIGH": "0.7"}, "0 < UTILIZATION_LOW < UTILIZATION_HIGH < 1"),
        ({"UTILIZATION_HIGH": "1"}, "0 < UTILIZATION_LOW < UTILIZATION_HIGH < 1"),
        ({"UTILIZATION_LOW": "0"}, "0 < UTILIZATION_LOW < UTILIZATION_HIGH < 1"),
        ({"COOLDOWN_S": "soon"}, "COOLDOWN_S must be a number"),
        ({"AUTOSCALE_INTERVAL_S": "0"}, "AUTOSCALE_INTERVAL_S must be a finite number >= 0.1"),
        ({"ACTUATOR": "kubernetes"}, "ACTUATOR must be one of local, swarm"),
        ({"ACTUATOR": "swarm"}, "ACTUATOR=swarm needs SWARM_SERVICE"),
        ({"WORKER_LANGUAGE": "rust"}, "WORKER_LANGUAGE must be one of python, go, java"),
        ({"MASTER_URL": "master:8888"}, "MASTER_URL must be an http(s):// URL"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        settings(**env)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_the_operator_token_is_required() -> None:
    with pytest.raises(ValueError, match=r"OPERATOR_TOKEN \(or OPERATOR_TOKEN_FILE\) is required"):
        AutoscalerSettings.from_env({})


def run_autoscaler(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in AutoscalerSettings.env_names()}
    return subprocess.run(
        [sys.executable, "-m", "services.autoscaler"],
        env={**base, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_process_exits_2_with_the_reason_on_a_bad_setting() -> None:
    done = run_autoscaler({"OPERATOR_TOKEN": TOKEN, "AUTOSCALE_MIN": "9", "AUTOSCALE_MAX": "2"})
    assert done.returncode == 2
    assert "autoscaler: bad setting: AUTOSCALE_MIN (9) must not be above AUTOSCALE_MAX (2)" in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_the_process_exits_2_when_its_worker_cannot_start_here(tmp_path: Path) -> None:
    missing = tmp_path / "worker-go"
    done = run_autoscaler({"OPERATOR_TOKEN": TOKEN, "WORKER_COMMAND": f"{missing} --flag"})
    assert done.returncode == 2
    assert (
        f"autoscaler: bad setting: WORKER_COMMAND: {str(missing)!r} is not a program that can be run here"
        in done.stderr
    )
