"""Tests of `lab swarm` as a process: with the real docker client and no daemon, without docker on PATH, and
with a stand-in `docker` that records what it is given (to prove secrets reach it on stdin only)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.paths import REPO_ROOT
from lab.swarm.stack import GEMINI_SECRET, SECRETS, config_version
from tests.conftest import require

pytestmark = pytest.mark.integration

LAB = str(Path(sys.executable).with_name("lab"))
NO_DAEMON = "unix:///nonexistent/lab-swarm-test/docker.sock"
KEY = "AIza-integration-key-never-on-a-command-line"
TIMEOUT_S = 60

# Answers of the stand-in docker: a manager with both labels, no secrets yet; every call logged as JSON.
FAKE_DOCKER = """\
import json, os, sys
args = sys.argv[1:]
stdin = sys.stdin.read() if args[:2] == ["secret", "create"] else None
env = {k: os.environ.get(k) for k in ("CONFIG_VERSION", "REGISTRY", "TAG", "WORKERS")}
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "stdin": stdin, "env": env}) + "\\n")
if args[:1] == ["info"]:
    print("active true")
elif args[:2] == ["node", "ls"]:
    print("id1 node-a true")
elif args[:2] == ["node", "inspect"]:
    print('id1 node-a {"ai-system.master":"true","ai-system.broker":"true"}')
elif args[:2] == ["network", "inspect"]:
    sys.exit("Error: No such network: " + args[-1])
elif args[:2] == ["secret", "create"]:
    print("secret-id")
"""


def lab(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `lab ARGV` (stdin not a terminal, so it never prompts)."""
    return subprocess.run(
        [LAB, *argv], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def environ(**changes: str) -> dict[str, str]:
    """This process's environment without any Docker daemon or Gemini key, plus `changes`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_") and k != "GEMINI_API_KEY"}
    return {**env, "DOCKER_HOST": NO_DAEMON, **changes}


@pytest.fixture
def docker_client() -> str:
    """The real docker client (no daemon is needed)."""
    found = shutil.which("docker")
    require("the docker client", found is not None, "install Docker Engine or its CLI (apt-get install docker.io)")
    assert found is not None
    return found


def test_the_real_client_without_a_daemon_says_the_daemon_is_unreachable(docker_client: str) -> None:
    result = lab("swarm", "status", env=environ())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the Docker daemon is unreachable" in result.stderr
    assert "lab-swarm-test/docker.sock" in result.stderr  # the gist of docker's own message
    assert "$ docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'" in result.stdout


def test_without_docker_on_path_it_says_how_to_install_it(tmp_path: Path) -> None:
    result = lab("swarm", "deploy", env=environ(PATH=str(tmp_path)))
    assert result.returncode == 1
    assert "docker: command not found; install Docker Engine: https://docs.docker.com/engine/install/" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("scale", "no-such-service", "2"), "invalid choice: 'no-such-service'"),
        (("scale", "worker-python", "-2"), "must be 0 or more, got -2"),
        (("scale", "master", "2"), "0 or 1 replica"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: tuple[str, ...], message: str) -> None:
    result = lab("swarm", *argv, env=environ())
    assert result.returncode == 2
    assert message in result.stderr
    assert "daemon" not in result.stderr  # refused before asking docker anything


def test_dry_run_needs_no_daemon(docker_client: str) -> None:
    result = lab("swarm", "verify", "--dry-run", "--url", "http://node-a:8888", env=environ())
    assert result.returncode == 0, result.stderr
    assert "$ docker stack services ai-system --format '{{json .}}'  # skipped: dry run" in result.stdout
    assert "http://node-a:8888/healthz" in result.stdout


def test_the_deploy_variables_give_the_config_names_and_images_docker_reads(docker_client: str) -> None:
    result = lab("swarm", "deploy", "--dry-run", "--encrypt", "--workers", "3", "--tag", "t9", env=environ())
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "docker stack deploy" in x]
    words = shlex.split(line[2:])
    variables = dict(w.split("=", 1) for w in words[: words.index("docker")])
    version = config_version()
    # A fleet names every language: `--workers 3` is three Python workers and no Go or Java ones.
    assert variables == {
        "CONFIG_VERSION": version,
        "REGISTRY": "localhost:5000",
        "TAG": "t9",
        "WORKERS": "3",
        "WORKERS_GO": "0",
        "WORKERS_JAVA": "0",
    }
    files = words[words.index("deploy") + 1 : words.index("--with-registry-auth")]
    # The real client merges the same files with the same variables, as `docker stack deploy` would.
    config = subprocess.run(
        [docker_client, "stack", "config", *files],
        cwd=REPO_ROOT,
        env=environ(**variables),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    ).stdout
    for name in ("base", "swarm", "acl"):
        assert f"name: ai-system-mosquitto-{name}-{version}" in config
    assert "image: localhost:5000/swarm-ai-lab/master:t9" in config
    assert "image: localhost:5000/swarm-ai-lab/worker:t9" in config
    assert "replicas: 3" in config
    assert "replicas: 0" in config
    assert 'encrypted: ""' in config


def _fake_docker(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    env = environ(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", FAKE_DOCKER_LOG=str(log))
    return env, log


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_deploy_gives_docker_the_secrets_on_stdin_only(tmp_path: Path) -> None:
    env, log = _fake_docker(tmp_path)
    env["GEMINI_API_KEY"] = KEY
    result = lab("swarm", "deploy", "--workers", "2", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(log)
    created = {c["args"][2]: c for c in calls if c["args"][:2] == ["secret", "create"]}
    assert list(created) == list(SECRETS)
    assert created[GEMINI_SECRET]["stdin"] == KEY
    assert all(c["args"][3:] == ["-"] and c["stdin"] for c in created.values())
    every_argv = "\n".join(" ".join(c["args"]) for c in calls)
    for call in created.values():
        assert call["stdin"].strip() not in every_argv
        assert call["stdin"].strip() not in result.stdout + result.stderr
    (deployed,) = [c for c in calls if c["args"][:2] == ["stack", "deploy"]]
    assert deployed["env"] == {
        "CONFIG_VERSION": config_version(),
        "REGISTRY": "localhost:5000",
        "TAG": "latest",
        "WORKERS": "2",
    }
    assert "WARNING" not in result.stderr  # both labels exist


def test_secrets_with_no_key_anywhere_store_the_offline_placeholder(tmp_path: Path) -> None:
    env, log = _fake_docker(tmp_path)
    result = lab("swarm", "secrets", env=env)
    assert result.returncode == 0, result.stderr
    assert "offline model" in result.stdout
    (gemini,) = [c for c in _calls(log) if c["args"][:3] == ["secret", "create", GEMINI_SECRET]]
    assert gemini["stdin"] == "\n"
