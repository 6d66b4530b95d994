"""Baseline mode's broker config and ACL, environments and CLI flag (`lab up --baseline`); off by default."""

from __future__ import annotations

from pathlib import Path

from lab.cli import build_parser
from lab.system import broker
from lab.system.config import ClusterConfig
from lab.system.credentials import Credentials
from lab.system.spec import ClusterSpec


def _rules(text: str) -> list[str]:
    """The ACL's non-comment lines, in order."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _anonymous_rules(text: str) -> list[str]:
    """The `topic` lines before the first `user` line: in Mosquitto 2.0 they apply to anonymous clients."""
    rules = _rules(text)
    first_user = next(i for i, line in enumerate(rules) if line.startswith("user "))
    return [line for line in rules[:first_user] if line.startswith("topic ")]


def _directives(text: str) -> dict[str, str]:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return {line.split()[0]: line.partition(" ")[2] for line in lines}


def test_by_default_the_acl_gives_anonymous_clients_nothing() -> None:
    assert _anonymous_rules(broker.render_acl("upb")) == []
    assert broker.render_acl("upb") == broker.acl_template().replace("{prefix}", "upb")


def test_baseline_acl_gives_anonymous_clients_exactly_what_a_baseline_worker_needs() -> None:
    assert _anonymous_rules(broker.render_acl("lab1", baseline=True)) == [
        "topic write lab1/workers/register",
        "topic write lab1/workers/status",
        "topic write lab1/logs",
        "topic read lab1/workers/+/tasks",
    ]


def test_baseline_acl_keeps_every_users_rules() -> None:
    plain, baseline = _rules(broker.render_acl("upb")), _rules(broker.render_acl("upb", baseline=True))
    assert baseline[-len(plain) :] == plain
    assert not any("{prefix}" in line for line in baseline)


def test_baseline_broker_admits_anonymous_clients_next_to_its_users(tmp_path: Path) -> None:
    conf = broker.write_config(tmp_path, 1883, credentials=Credentials(), baseline=True)
    directives = _directives(conf.read_text())
    assert directives["allow_anonymous"] == "true"
    assert directives["password_file"] == str(tmp_path / broker.PASSWORD_FILE_NAME)
    assert directives["acl_file"] == str(tmp_path / broker.ACL_FILE_NAME)
    assert "topic read upb/workers/+/tasks" in (tmp_path / broker.ACL_FILE_NAME).read_text()
    # Its log on $SYS too, for the master to see workers without a Last Will go.
    assert set(broker.BROKER_LOG_LINES) <= set(conf.read_text().splitlines())


def test_without_baseline_the_broker_refuses_anonymous_clients(tmp_path: Path) -> None:
    conf = broker.write_config(tmp_path, 1883, credentials=Credentials())
    assert _directives(conf.read_text())["allow_anonymous"] == "false"
    assert "log_dest topic" not in conf.read_text()
    assert _anonymous_rules((tmp_path / broker.ACL_FILE_NAME).read_text()) == []


def test_baseline_tells_the_master_to_accept_token_less_results_and_keeps_every_login() -> None:
    baseline = ClusterConfig(web_port=1, grpc_port=2, mqtt_port=3, baseline=True)
    assert baseline.master_env({})["ALLOW_BASELINE_WORKERS"] == "true"
    assert baseline.master_env({})["MQTT_USERNAME"] == "master"
    assert baseline.worker_env("python-worker-1", {})["MQTT_USERNAME"] == "worker"
    assert "ALLOW_BASELINE_WORKERS" not in baseline.worker_env("python-worker-1", {})
    assert "ALLOW_BASELINE_WORKERS" not in ClusterConfig(web_port=1, grpc_port=2, mqtt_port=3).master_env({})


def test_the_spec_and_lab_up_carry_baseline_off_by_default() -> None:
    assert ClusterSpec(web_port=1, grpc_port=2, mqtt_port=3).resolve().baseline is False
    assert ClusterSpec(web_port=1, grpc_port=2, mqtt_port=3, baseline=True).resolve().baseline is True
    assert build_parser().parse_args(["up"]).baseline is False
    assert build_parser().parse_args(["up", "--baseline"]).baseline is True
