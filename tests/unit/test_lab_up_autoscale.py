"""`lab up --autoscale MIN..MAX` and what a LocalCluster asked to autoscale gives its autoscaler."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import build_parser
from lab.system.autoscaling import autoscaler_env, parse_autoscale
from lab.system.config import ClusterConfig
from lab.system.spec import ClusterSpec
from services.autoscaler.settings import AutoscalerSettings


def test_autoscale_is_off_unless_asked() -> None:
    assert build_parser().parse_args(["up"]).autoscale is None


@pytest.mark.parametrize(("text", "bounds"), [("2..8", (2, 8)), ("0..1", (0, 1)), (" 3 .. 3 ", (3, 3))])
def test_a_range_is_read(text: str, bounds: tuple[int, int]) -> None:
    assert build_parser().parse_args(["up", "--autoscale", text]).autoscale == bounds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8..2", "the autoscaled minimum (8) is above the maximum (2)"),
        ("x", "autoscale is MIN..MAX workers"),
        ("-1..4", "autoscale is MIN..MAX workers"),
        ("2-8", "autoscale is MIN..MAX workers"),
        ("0..0", "the autoscaled maximum must be >= 1"),
    ],
)
def test_a_bad_range_is_refused_with_what_is_expected(
    text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["up", f"--autoscale={text}"])  # "-1..4" alone would read as an option
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --autoscale" in err and message in err


def test_parse_autoscale_is_the_same_rule_for_python_callers() -> None:
    assert parse_autoscale("1..4") == (1, 4)
    with pytest.raises(ValueError, match="above the maximum"):
        parse_autoscale("4..1")


def test_a_spec_checks_its_bounds_and_takes_one_language() -> None:
    assert ClusterSpec(autoscale=(1, 4)).autoscale_language == "python"
    assert ClusterSpec(workers="go=1", autoscale=(1, 4)).autoscale_language == "go"
    with pytest.raises(ValueError, match="above the maximum"):
        ClusterSpec(autoscale=(4, 1))
    with pytest.raises(ValueError, match="one language"):
        ClusterSpec(workers="python=1,go=1", autoscale=(1, 4))


def test_the_autoscaler_gets_the_workers_environment_the_master_and_its_bounds(tmp_path: Path) -> None:
    config = ClusterConfig(web_port=8001, grpc_port=8002, mqtt_port=8003, extra_env={"COOLDOWN_S": "3"})
    base = {"PATH": "/usr/bin", "WORKER_ID": "from-shell", "OPERATOR_TOKEN_FILE": "/shell/token"}
    env = autoscaler_env(config, (2, 5), "python", "tok", tmp_path, base)
    settings = AutoscalerSettings.from_env(env)
    assert (settings.master_url, settings.operator_token) == (config.web_url, "tok")
    assert (settings.min_workers, settings.max_workers, settings.actuator) == (2, 5, "local")
    assert settings.cooldown_s == 3.0  # the cluster's extra_env reaches the autoscaler
    assert settings.worker_command is not None and "services.worker" in settings.worker_command
    assert "WORKER_ID" not in env  # the autoscaler gives each worker its own
    # What its workers inherit: the worker's login to the broker and its settings.
    assert env["MQTT_USERNAME"] == config.credentials.login("worker")[0]
    assert env["MQTT_PORT"] == "8003" and env["HEALTH_FILE"] == str(tmp_path / "autoscaled.health")
