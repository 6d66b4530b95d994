"""The stack's checks of what scaling relies on: the autoscaler service (its placement, secret, socket and what it
scales) and the workers' grace periods; each check fails when its piece is taken out (no processes)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from lab.swarm import stack_check
from lab.swarm.scaling_check import (
    autoscaler_problems,
    default_value,
    grace_problems,
    longest_task_seconds,
    scaling_problems,
)
from lab.swarm.stack_check import STACK, load

ROOT = STACK.parent


@pytest.fixture
def doc() -> dict[str, Any]:
    return load(STACK)


def stack_copy(tmp_path: Path, text: str) -> Path:
    """A stack file with `text` in a directory that has what the checks read beside it (configs, Dockerfiles)."""
    for dockerfile in ROOT.glob("services/*/Dockerfile"):
        target = tmp_path / dockerfile.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dockerfile, target)
    shutil.copytree(ROOT / "services/mosquitto", tmp_path / "services/mosquitto", dirs_exist_ok=True)
    path = tmp_path / "stack.yml"
    path.write_text(text, encoding="utf-8")
    return path


def without(text: str, lines: list[str]) -> str:
    """`text` with each of `lines` (whole lines, as written) removed; each must be there."""
    for line in lines:
        assert f"\n{line}\n" in text, line
        text = text.replace(f"\n{line}\n", "\n", 1)
    return text


def test_the_committed_stack_scales_safely(doc: dict[str, Any]) -> None:
    assert scaling_problems(doc) == []
    task, made_of = longest_task_seconds(doc["services"]["worker-python"])
    assert (task, made_of) == (40.0, "WORK_SECONDS (10 s) + GEMINI_TIMEOUT_SECONDS (30 s)")
    # The autoscaler's image reads every variable the stack gives it.
    assert stack_check.environment_problems(doc) == []


def test_a_stack_file_without_the_socket_mount_fails_the_check(tmp_path: Path) -> None:
    text = without(
        STACK.read_text(encoding="utf-8"),
        [
            "      - type: bind",
            "        source: /var/run/docker.sock",
            "        target: /var/run/docker.sock",
            "        read_only: true",
        ],
    )
    text = text.replace("    volumes:\n      # `read_only` stops", "    # `read_only` stops", 1)
    path = stack_copy(tmp_path, text)
    problems = stack_check.check(path)
    assert "service autoscaler: the engine's socket is not mounted (a bind of /var/run/docker.sock, read_only)" in (
        problems
    )
    assert stack_check.main([str(path)]) == 1


def test_a_stack_file_without_the_placement_on_a_manager_fails_the_check(tmp_path: Path) -> None:
    text = without(STACK.read_text(encoding="utf-8"), ["          - node.role == manager"])
    text = text.replace(
        "      placement:\n        # Only a manager's engine can change a service.\n        constraints:\n", "", 1
    )
    problems = stack_check.check(stack_copy(tmp_path, text))
    assert problems == ["service autoscaler: not placed on a manager (node.role == manager): only a manager can scale"]


def test_a_stack_file_without_the_autoscaler_fails_the_check(tmp_path: Path) -> None:
    text = STACK.read_text(encoding="utf-8")
    start = text.index("  # The autoscaler (services/autoscaler)")
    end = text.index("\nnetworks:\n")
    problems = stack_check.check(stack_copy(tmp_path, text[:start] + text[end + 1 :]))
    assert problems == ["no service autoscaler (the workers would stay at the replicas of the deploy)"]


def test_the_operator_token_must_be_the_masters_and_readable_by_the_autoscaler_alone(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["services"]["autoscaler"]["secrets"] = []
    assert "service autoscaler: lacks the master's operator token secret (operator_token)" in autoscaler_problems(bad)
    bad = copy.deepcopy(doc)
    bad["services"]["autoscaler"]["secrets"][0]["uid"] = "10001"
    bad["services"]["autoscaler"]["environment"]["OPERATOR_TOKEN_FILE"] = "/run/secrets/token"
    assert autoscaler_problems(bad) == [
        "service autoscaler: secret operator_token is not 0:0 mode 0o400 (the user it runs as)",
        "service autoscaler: OPERATOR_TOKEN_FILE is '/run/secrets/token', not '/run/secrets/operator_token'",
    ]
    # Without `user`, it is the image's user (10001) who must own it.
    del bad["services"]["autoscaler"]["user"]
    assert "service autoscaler: secret operator_token is not 10001:10001 mode 0o400 (the user it runs as)" in (
        autoscaler_problems(bad)
    )


def test_the_socket_must_be_read_only_and_where_docker_host_points(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["services"]["autoscaler"]["volumes"][0]["read_only"] = False
    bad["services"]["autoscaler"]["environment"]["DOCKER_HOST"] = "tcp://127.0.0.1:2375"
    assert autoscaler_problems(bad) == [
        "service autoscaler: the socket's bind is not read_only (the container may replace it)",
        "service autoscaler: DOCKER_HOST is 'tcp://127.0.0.1:2375', not the mounted socket "
        "(unix:///var/run/docker.sock)",
    ]
    bad["services"]["autoscaler"]["volumes"] = ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    bad["services"]["autoscaler"]["environment"]["DOCKER_HOST"] = "unix:///var/run/docker.sock"
    assert autoscaler_problems(bad) == []


def test_it_scales_this_stacks_python_workers_and_finds_the_master(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    env = bad["services"]["autoscaler"]["environment"]
    env.update(
        ACTUATOR="local", SWARM_SERVICE="ai-system_worker-python", MASTER_URL="http://127.0.0.1:8888", AUTOSCALE_MIN="1"
    )
    bad["services"]["autoscaler"]["networks"] = ["other"]
    bad["services"]["autoscaler"]["deploy"]["replicas"] = 2
    bad["services"]["autoscaler"]["deploy"]["update_config"]["order"] = "start-first"
    assert autoscaler_problems(bad) == [
        "service autoscaler: replicas 2 is not ${AUTOSCALER:-1} (0 or 1)",
        "service autoscaler: update_config.order is not stop-first (two would fight over replicas)",
        "service autoscaler: ACTUATOR is 'local', not 'swarm'",
        "service autoscaler: SWARM_SERVICE is 'ai-system_worker-python', not "
        "'{{index .Service.Labels \"com.docker.stack.namespace\"}}_worker-python'",
        "service autoscaler: MASTER_URL is 'http://127.0.0.1:8888', not 'http://master:8888'",
        "service autoscaler: shares no network with the master",
        "service autoscaler: AUTOSCALE_MIN '1' does not default to worker-python's replicas (2): a fleet of "
        "Python workers would not start at the autoscaler's minimum",
    ]


def test_a_grace_period_shorter_than_a_task_is_reported(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    for name in ("worker-python", "worker-go", "worker-java"):
        bad["services"][name]["stop_grace_period"] = "15s"
    problems = grace_problems(bad)
    assert len(problems) == 3
    assert problems[0] == (
        "service worker-python: stop_grace_period 15s is shorter than WORK_SECONDS (10 s) + GEMINI_TIMEOUT_SECONDS "
        "(30 s) + 5 s to say goodbye = 45 s: a worker stopped by a scale-down could be killed in the middle of its task"
    )
    # A longer work time in the stack, or a model timeout set there, needs a longer grace period.
    bad = copy.deepcopy(doc)
    bad["services"]["worker-go"]["environment"] = {
        **bad["services"]["worker-go"]["environment"],
        "WORK_SECONDS": "${WORK_SECONDS:-20}",
    }
    bad["services"]["worker-java"]["environment"] = {
        **bad["services"]["worker-java"]["environment"],
        "GEMINI_TIMEOUT_SECONDS": "soon",
    }
    assert grace_problems(bad) == [
        "service worker-go: stop_grace_period 45s is shorter than WORK_SECONDS (20 s) + GEMINI_TIMEOUT_SECONDS "
        "(30 s) + 5 s to say goodbye = 55 s: a worker stopped by a scale-down could be killed in the middle of its "
        "task",
        "service worker-java: cannot tell how long a task may take: GEMINI_TIMEOUT_SECONDS is 'soon', not a number "
        "of seconds",
    ]


def test_a_stack_file_with_the_old_grace_period_fails_the_check(tmp_path: Path) -> None:
    text = STACK.read_text(encoding="utf-8").replace(
        "stop_grace_period: &worker-grace 45s", "stop_grace_period: &worker-grace 15s"
    )
    problems = stack_check.check(stack_copy(tmp_path, text))
    assert [p.split(":")[0] for p in problems] == ["service worker-python", "service worker-go", "service worker-java"]


@pytest.mark.parametrize(
    ("value", "default"), [("${WORK_SECONDS:-10}", "10"), ("${X-3}", "3"), ("12", "12"), ("${X:?set X}", "${X:?set X}")]
)
def test_a_value_reads_as_its_default(value: str, default: str) -> None:
    assert default_value(value) == default
