"""stack.baseline.yml (`lab swarm deploy --baseline`): layered on stack.yml, the stack still passes every
static check, and it changes only what baseline mode needs (no processes)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from lab.cli import main
from lab.paths import REPO_ROOT
from lab.swarm.stack import BASELINE_FILE, MOSQUITTO_FILES, deploy_command
from lab.swarm.stack_check import (
    STACK,
    environment_problems,
    interpolation_problems,
    load,
    reference_problems,
    schema_errors,
    worker_problems,
)
from lab.system.broker import BROKER_LOG_LINES

BASELINE = REPO_ROOT / BASELINE_FILE


def _merged() -> dict[str, Any]:
    """stack.yml with stack.baseline.yml layered on as `docker stack deploy -c A -c B` does for the keys the
    overlay uses: mappings merge, `command` is replaced, service configs merge by source."""
    doc, overlay = load(STACK), load(BASELINE)
    merged = copy.deepcopy(doc)
    for name, service in overlay["services"].items():
        target = merged["services"][name]
        for key, value in service.items():
            if key == "configs":
                by_source = {c["source"]: c for c in target.get("configs", [])} | {c["source"]: c for c in value}
                target["configs"] = list(by_source.values())
            elif isinstance(value, dict):
                target[key] = {**target.get(key, {}), **value}
            else:
                target[key] = value
    merged["configs"] = {**merged["configs"], **overlay["configs"]}
    return merged


def test_the_layered_stack_passes_every_static_check() -> None:
    merged = _merged()
    assert interpolation_problems(BASELINE.read_text(encoding="utf-8")) == []
    assert schema_errors(merged) == []
    assert reference_problems(merged, REPO_ROOT) == []
    assert environment_problems(merged) == []
    assert worker_problems(merged, REPO_ROOT) == []


def test_the_overlay_changes_only_the_broker_and_the_masters_baseline_setting() -> None:
    base, merged = load(STACK), _merged()
    assert merged["services"]["master"]["environment"] == {
        **base["services"]["master"]["environment"],
        "ALLOW_BASELINE_WORKERS": "true",
    }
    for name in set(base["services"]) - {"mosquitto", "master"}:
        assert merged["services"][name] == base["services"][name]
    # The same command as stack.yml's but for the anonymous rules read before the users' ACL.
    command, baseline_command = base["services"]["mosquitto"]["command"], merged["services"]["mosquitto"]["command"]
    assert baseline_command[:2] == command[:2] == ["sh", "-c"]
    acl = "/mosquitto/config/acl.template"
    assert " ".join(baseline_command[2].split()) == " ".join(
        command[2].replace(acl, f"/mosquitto/config/acl.baseline.template {acl}").split()
    )
    # New files, new (immutable) config names.
    assert merged["configs"]["mosquitto_swarm"]["name"] != base["configs"]["mosquitto_swarm"]["name"]


def _settings(path: str) -> list[str]:
    lines = (REPO_ROOT / path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_the_baseline_broker_config_is_swarm_conf_admitting_anonymous_clients_and_publishing_its_log() -> None:
    plain = _settings("services/mosquitto/swarm.conf")
    assert "allow_anonymous false" in plain
    assert (
        _settings("services/mosquitto/swarm.baseline.conf")
        == ["allow_anonymous true" if line == "allow_anonymous false" else line for line in plain] + BROKER_LOG_LINES
    )


def test_config_version_covers_the_baseline_files() -> None:
    assert {"services/mosquitto/swarm.baseline.conf", "services/mosquitto/acl.baseline.template"} <= set(
        MOSQUITTO_FILES
    )


@pytest.mark.parametrize(("encrypt", "files"), [(False, ["stack.yml"]), (True, ["stack.yml", "stack.encrypted.yml"])])
def test_deploy_baseline_adds_the_overlay_last(encrypt: bool, files: list[str]) -> None:
    command = deploy_command("ai-system", encrypt, baseline=True)
    given = [command[i + 1] for i, arg in enumerate(command) if arg == "-c"]
    assert given == [*files, BASELINE_FILE]
    assert BASELINE_FILE not in deploy_command("ai-system", encrypt)
    assert yaml.safe_load(BASELINE.read_text(encoding="utf-8"))["version"] == "3.8"


def test_lab_swarm_deploy_baseline_runs_docker_with_the_overlay(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["swarm", "deploy", "--baseline", "--dry-run"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert commands[-1].endswith(
        "docker stack deploy -c stack.yml -c stack.baseline.yml --with-registry-auth --prune ai-system"
    )
    assert "anonymous MQTT clients may join" in out
