"""The stack file's own checks: schema, references, environment, interpolation (no processes)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from lab.swarm import stack_check
from lab.swarm.stack_check import (
    READERS,
    STACK,
    environment_problems,
    interpolation_problems,
    load,
    reference_problems,
    schema_errors,
)


@pytest.fixture
def doc() -> dict[str, Any]:
    return load(STACK)


def test_the_committed_stack_passes_every_check() -> None:
    assert stack_check.check(STACK) == []
    assert stack_check.main([str(STACK)]) == 0


def test_schema_rejects_an_unknown_service_key_and_a_bad_type(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["services"]["master"]["restart_polcy"] = "always"
    bad["services"]["worker-python"]["deploy"]["update_config"]["parallelism"] = [1]
    errors = schema_errors(bad)
    assert any("restart_polcy" in e for e in errors), errors
    assert any("services.worker-python.deploy.update_config.parallelism" in e for e in errors), errors


def test_a_secret_used_but_not_defined_is_reported(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    del bad["secrets"]["gemini_api_key"]
    assert reference_problems(bad) == [
        "service worker-python uses secret 'gemini_api_key', which is not defined under secrets:"
    ]


def test_networks_configs_and_volumes_are_checked_both_ways(doc: dict[str, Any], tmp_path: Path) -> None:
    bad = copy.deepcopy(doc)
    bad["services"]["master"]["networks"] = ["ai-network", "backend"]
    bad["services"]["master"]["volumes"] = ["journal:/data", "./local:/x", "/abs:/y"]
    bad["services"]["mosquitto"]["configs"][0]["source"] = "mosquitto_bse"
    bad["networks"]["unused-net"] = {"driver": "overlay"}
    problems = reference_problems(bad)
    assert "service master uses network 'backend', which is not defined under networks:" in problems
    assert "service master uses volume 'journal', which is not defined under volumes:" in problems
    assert "volume 'master_journal' is defined but no service uses it" in problems
    assert "service mosquitto uses config 'mosquitto_bse', which is not defined under configs:" in problems
    assert "config 'mosquitto_base' is defined but no service uses it" in problems
    assert "network 'unused-net' is defined but no service uses it" in problems
    # Bind mounts are not named volumes; the base directory decides whether config files exist.
    assert not any("'./local'" in p or "'/abs'" in p for p in problems)
    assert any(p.startswith("config mosquitto_swarm: file") for p in reference_problems(doc, tmp_path))


def test_a_variable_no_service_reads_is_reported(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["services"]["worker-python"]["environment"]["WORK_SECOND"] = "3"
    bad["services"]["master"]["environment"]["GEMINI_API_KEY_FILE"] = "/run/secrets/gemini_api_key"
    assert environment_problems(bad) == [
        "service master: sets GEMINI_API_KEY_FILE, which the service never reads",
        "service worker-python: sets WORK_SECOND, which the service never reads",
    ]


def test_a_variable_the_broker_command_reads_must_be_set(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    del bad["services"]["mosquitto"]["environment"]["TOPIC_PREFIX"]
    problems = environment_problems(bad)
    assert problems == ["service mosquitto: its command reads $TOPIC_PREFIX, which the stack does not set"]


def test_the_images_read_every_variable_of_their_settings_including_secret_files() -> None:
    master, worker = READERS["swarm-ai-lab/master"], READERS["swarm-ai-lab/worker"]
    assert {"MQTT_PASSWORD", "MQTT_PASSWORD_FILE", "JOURNAL_PATH", "GRPC_ENDPOINT"} <= master
    assert {"GEMINI_API_KEY_FILE", "WORK_SECONDS", "MQTT_PASSWORD_FILE"} <= worker
    assert "WORK_SECONDS" not in master


def test_interpolation_needs_a_default_or_a_required_error() -> None:
    text = "\n".join(
        [
            "image: ${REGISTRY:-localhost:5000}/x:${TAG:-latest}",
            "replicas: ${WORKERS}",
            "a: ${MUST:?set MUST}",
            "b: $PLAIN",
            "c: $$LITERAL and $${ALSO_LITERAL}",
            "# ${IN_A_COMMENT}",
        ]
    )
    assert interpolation_problems(text) == [
        "line 2: ${WORKERS} has no default: write ${WORKERS:-value}",
        "line 4: $PLAIN has no default: write ${PLAIN:-value} (or $$PLAIN)",
    ]


def test_secrets_are_files_never_environment_values(doc: dict[str, Any]) -> None:
    for name, service in doc["services"].items():
        for variable in service.get("environment", {}):
            if any(word in variable for word in ("PASSWORD", "KEY", "TOKEN", "SECRET")):
                assert variable.endswith("_FILE"), f"{name} gets the secret {variable} as a plain value"
                assert service["environment"][variable].startswith("/run/secrets/")


def test_every_service_rolls_back_heals_and_is_bounded(doc: dict[str, Any]) -> None:
    for name, service in doc["services"].items():
        deploy = service["deploy"]
        assert deploy["update_config"]["parallelism"] == 1, name
        assert deploy["update_config"]["failure_action"] == "rollback", name
        assert deploy["update_config"]["order"] in ("start-first", "stop-first"), name
        assert deploy["rollback_config"]["parallelism"] == 1, name
        assert deploy["restart_policy"]["condition"] == "any", name
        assert {"cpus", "memory"} <= set(deploy["resources"]["limits"]), name
        assert {"cpus", "memory"} <= set(deploy["resources"]["reservations"]), name
        assert service["healthcheck"]["test"], name
        assert service["logging"]["options"]["max-size"], name
    # The stateful ones never run twice at once.
    assert doc["services"]["master"]["deploy"]["update_config"]["order"] == "stop-first"
    assert doc["services"]["mosquitto"]["deploy"]["update_config"]["order"] == "stop-first"
