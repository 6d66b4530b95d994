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
    duration,
    environment_problems,
    image_repository,
    image_user_and_entrypoint,
    interpolation_problems,
    load,
    reference_problems,
    schema_errors,
    worker_problems,
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
        f"service {worker} uses secret 'gemini_api_key', which is not defined under secrets:"
        for worker in ("worker-python", "worker-go", "worker-java")
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
    # The workers share one environment (a YAML anchor): a variable added to one is given to all three.
    assert environment_problems(bad) == [
        "service master: sets GEMINI_API_KEY_FILE, which the service never reads",
        "service worker-python: sets WORK_SECOND, which the service never reads",
        "service worker-go: sets WORK_SECOND, which the service never reads",
        "service worker-java: sets WORK_SECOND, which the service never reads",
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


# -- the workers: one service per language, each a worker as the system needs it ----------------------------

WORKERS = ("worker-python", "worker-go", "worker-java")


def _java_dockerfile(tmp_path: Path) -> Path:
    """A base directory with the stack's files and a Java Dockerfile (the real one may not be written yet)."""
    for name in ("services/master/Dockerfile", "services/worker/Dockerfile", "services/worker-go/Dockerfile"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((STACK.parent / name).read_text())
    java = tmp_path / "services/worker-java/Dockerfile"
    java.parent.mkdir(parents=True, exist_ok=True)
    real = STACK.parent / "services/worker-java/Dockerfile"
    java.write_text(
        real.read_text()
        if real.is_file()
        else 'FROM x AS build\nFROM y\nCOPY --from=build /app /app\nUSER 10001:10001\nENTRYPOINT ["/app/worker-java"]\n'
    )
    return tmp_path


def test_the_stack_has_a_worker_service_per_language_with_its_variable(doc: dict[str, Any]) -> None:
    assert tuple(name for name in doc["services"] if name.startswith("worker-")) == WORKERS
    assert [doc["services"][w]["deploy"]["replicas"] for w in WORKERS] == [
        "${WORKERS:-2}",
        "${WORKERS_GO:-2}",
        "${WORKERS_JAVA:-2}",
    ]
    images = [doc["services"][w]["image"].split("/", 1)[1] for w in WORKERS]
    assert images == [f"swarm-ai-lab/{name}:${{TAG:-latest}}" for name in ("worker", "worker-go", "worker-java")]


def test_the_workers_share_every_setting_but_image_health_command_and_replicas(doc: dict[str, Any]) -> None:
    python, *others = (copy.deepcopy(doc["services"][w]) for w in WORKERS)
    for service in (python, *others):
        del service["image"], service["healthcheck"]["test"], service["deploy"]["replicas"]
    assert all(service == python for service in others)


def test_every_worker_checks_its_health_with_its_own_program(doc: dict[str, Any], tmp_path: Path) -> None:
    tests = {w: doc["services"][w]["healthcheck"]["test"] for w in WORKERS}
    assert tests["worker-python"] == ["CMD", "python", "-m", "services.worker", "--check"]
    assert tests["worker-go"] == ["CMD", "/usr/local/bin/worker-go", "--check"]
    assert tests["worker-java"][-1] == "--check" and tests["worker-java"][1].endswith("worker-java")
    assert worker_problems(doc, _java_dockerfile(tmp_path)) == []
    bad = copy.deepcopy(doc)
    bad["services"]["worker-go"]["healthcheck"]["test"] = ["CMD-SHELL", "worker-go --check"]
    bad["services"]["worker-java"]["healthcheck"]["test"] = ["CMD", "/usr/local/bin/worker-go", "--check"]
    problems = worker_problems(bad, tmp_path)
    assert any(p.startswith("service worker-go: health check ['CMD-SHELL'") for p in problems), problems
    assert any(p.startswith("service worker-java: health check ['CMD', '/usr/local/bin/worker-go'") for p in problems)


def test_a_worker_without_its_secrets_or_running_as_root_is_reported(doc: dict[str, Any], tmp_path: Path) -> None:
    bad = copy.deepcopy(doc)
    go = bad["services"]["worker-go"]
    go["secrets"] = [s for s in go["secrets"] if s["source"] != "gemini_api_key"]
    go["secrets"][0] = {**go["secrets"][0], "mode": 0o444}
    go["user"] = "0"
    bad["services"]["worker-java"]["environment"] = {
        **bad["services"]["worker-java"]["environment"],
        "MQTT_PASSWORD_FILE": "/run/secrets/other",
    }
    problems = worker_problems(bad, _java_dockerfile(tmp_path))
    assert "service worker-go: its image runs as '0': a worker runs as a numeric non-root user" in problems
    assert any(
        p.startswith("service worker-go: secret mqtt_worker_password is 10001:10001 mode 0o444, not 0:0")
        for p in problems
    )
    assert "service worker-go: lacks the secret gemini_api_key (long form, with uid, gid and mode)" in problems
    assert (
        "service worker-java: MQTT_PASSWORD_FILE is '/run/secrets/other', not '/run/secrets/mqtt_worker_password'"
        in problems
    )
    # What differs from worker-python is named too (the anchors keep them equal in the file).
    assert "service worker-go: secrets differs from worker-python's" in problems
    assert "service worker-java: environment differs from worker-python's" in problems


def test_a_dockerfile_without_user_runs_as_root(tmp_path: Path, doc: dict[str, Any]) -> None:
    base = _java_dockerfile(tmp_path)
    (base / "services/worker-java/Dockerfile").write_text('FROM y\nENTRYPOINT ["/app/worker-java"]\n')
    assert image_user_and_entrypoint(base / "services/worker-java/Dockerfile") == ("", ["/app/worker-java"])
    assert image_user_and_entrypoint(STACK.parent / "services/worker-go/Dockerfile") == ("10001:10001", ["worker-go"])
    problems = worker_problems(doc, base)
    assert "service worker-java: its image runs as 'root': a worker runs as a numeric non-root user" in problems
    # The secrets are 10001's, which is not the image's user any more.
    assert any(p.startswith("service worker-java: secret gemini_api_key is 10001:10001") for p in problems)


def test_worker_policies_replicas_grace_and_missing_services(doc: dict[str, Any], tmp_path: Path) -> None:
    base = _java_dockerfile(tmp_path)
    bad = copy.deepcopy(doc)
    java = bad["services"]["worker-java"]
    java["deploy"] = {**java["deploy"], "replicas": "${WORKERS:-2}"}
    java["deploy"]["update_config"] = {**java["deploy"]["update_config"], "order": "stop-first"}
    java["stop_grace_period"] = "2s"
    bad["services"]["worker-rust"] = copy.deepcopy(bad["services"]["worker-python"])
    del bad["services"]["worker-go"]
    problems = worker_problems(bad, base)
    assert "no service worker-go (the go worker)" in problems
    assert "service worker-java: replicas '${WORKERS:-2}' is not ${WORKERS_JAVA:-N}" in problems
    assert "service worker-java: update_config.order is not start-first (a worker holds no state)" in problems
    assert "service worker-java: stop_grace_period 2s is shorter than the 5 s a worker may take to say goodbye" in (
        problems
    )
    assert "service worker-java: deploy.update_config differs from worker-python's" in problems
    assert "service worker-java: stop_grace_period differs from worker-python's" in problems
    assert any(p.startswith("service worker-rust: a worker of no known language") for p in problems)


def test_a_worker_whose_dockerfile_is_missing_is_reported(doc: dict[str, Any], tmp_path: Path) -> None:
    base = _java_dockerfile(tmp_path)
    (base / "services/worker-go/Dockerfile").unlink()
    assert worker_problems(doc, base) == [
        "service worker-go: services/worker-go/Dockerfile, which builds its image, does not exist"
    ]
    bad = copy.deepcopy(doc)
    bad["services"]["worker-go"]["image"] = "golang:1.26"
    assert worker_problems(bad, base)[0] == "service worker-go: image golang:1.26 is not one built from this repository"


@pytest.mark.parametrize(
    ("text", "seconds"), [("15s", 15.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("15", None), ("s", None)]
)
def test_durations_are_read_as_compose_writes_them(text: str, seconds: float | None) -> None:
    assert duration(text) == seconds


def test_the_worker_images_read_the_python_workers_settings() -> None:
    assert READERS["swarm-ai-lab/worker-go"] == READERS["swarm-ai-lab/worker-java"] == READERS["swarm-ai-lab/worker"]
    assert image_repository("${REGISTRY:-localhost:5000}/swarm-ai-lab/worker-go:${TAG:-latest}") == (
        "swarm-ai-lab/worker-go"
    )
