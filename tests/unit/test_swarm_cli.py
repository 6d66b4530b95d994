"""Tests of `lab swarm` without processes: dry-run output, the commands built, secrets kept off command lines,
and the swarm checks fed with recorded docker output (a fake runner stands in for the docker client)."""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.cli import build_parser, main
from lab.commands import swarm
from lab.paths import REPO_ROOT
from lab.swarm import verify as swarm_verify
from lab.swarm.docker import Docker, DockerError, NotManagerError
from lab.swarm.secrets import SecretsInUseError, ensure_secrets
from lab.swarm.stack import (
    DOCKERFILES,
    EMPTY_KEY,
    GEMINI_SECRET,
    JOURNAL_KEY_SECRET,
    MOSQUITTO_FILES,
    MQTT_SECRETS,
    OPERATOR_SECRET,
    PASSWD_SECRET,
    PASSWORD_SECRETS,
    SECRETS,
    SecretPlanError,
    UsageError,
    config_version,
    dockerfile_args,
    json_lines,
    parse_nodes,
    replicas,
    secrets_to_create,
    worker_variables,
)
from lab.swarm.verify import Check
from lab.system.credentials import password_hash

# The master's own secrets: the operator token and the journal key.
MASTER_SECRETS = (OPERATOR_SECRET, JOURNAL_KEY_SECRET)

KEY = "AIza-test-key-that-must-never-be-printed"
VERSION = config_version()
CHECK = "info --format {{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"


@dataclass
class Call:
    """One docker command the fake runner received."""

    args: list[str]
    stdin: str | None
    env: dict[str, str]


@dataclass
class FakeDockerClient:
    """Answers docker commands from a table (command prefix -> (exit code, stdout, stderr)) and records them."""

    answers: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        args = argv[1:]
        self.calls.append(Call(args, kwargs.get("input"), dict(kwargs.get("env") or {})))
        line = " ".join(args)
        for prefix, (code, out, err) in self.answers.items():
            if line.startswith(prefix):
                return subprocess.CompletedProcess(argv, code, out, err)
        return subprocess.CompletedProcess(argv, 0, "", "")

    def ran(self, prefix: str) -> list[Call]:
        """The calls whose command line starts with `prefix`."""
        return [c for c in self.calls if " ".join(c.args).startswith(prefix)]


Made = tuple[Docker, FakeDockerClient, list[str]]


@pytest.fixture
def make_docker(tmp_path: Path) -> Callable[..., Made]:
    """A Docker whose client is the fake (a `docker` file on PATH so that it counts as installed)."""
    (tmp_path / "docker").write_text("#!/bin/sh\nexit 99\n")
    (tmp_path / "docker").chmod(0o755)

    def make(answers: dict[str, tuple[int, str, str]] | None = None, **environ: str) -> Made:
        fake = FakeDockerClient({CHECK: (0, "active true\n", ""), **(answers or {})})
        printed: list[str] = []
        docker = Docker(environ={"PATH": str(tmp_path), **environ}, out=printed.append, runner=fake)
        return docker, fake, printed

    return make


def parse(*argv: str) -> argparse.Namespace:
    """The `lab swarm ...` arguments as the CLI parses them."""
    return build_parser().parse_args(["swarm", *argv])


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run `lab swarm ARGV --dry-run`; (exit code, the printed docker commands)."""
    code = main(["swarm", *argv, "--dry-run"])
    out = capsys.readouterr().out
    return code, [line for line in out.splitlines() if line.startswith("$ ")]


# -- CONFIG_VERSION ---------------------------------------------------------------------------------


def test_config_version_is_a_short_hash_that_is_stable(tmp_path: Path) -> None:
    for name in MOSQUITTO_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    assert len(VERSION) == 12 and int(VERSION, 16) >= 0
    assert config_version() == VERSION
    assert config_version(tmp_path) == VERSION


@pytest.mark.parametrize("changed", MOSQUITTO_FILES)
def test_config_version_changes_when_any_mosquitto_file_changes(tmp_path: Path, changed: str) -> None:
    for name in MOSQUITTO_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    with (tmp_path / changed).open("a") as f:
        f.write("\n# changed\n")
    assert config_version(tmp_path) != VERSION


# -- dry runs: the exact commands ---------------------------------------------------------------------


def test_build_dry_run_builds_every_image_from_the_root_and_pushes(capsys: pytest.CaptureFixture[str]) -> None:
    code, commands = dry_run(capsys, "build", "--registry", "reg.example:5000", "--tag", "v7", "--push")
    assert code == 0
    assert commands[1:] == [
        "$ docker build -f services/master/Dockerfile -t reg.example:5000/swarm-ai-lab/master:v7 .",
        "$ docker build -f services/worker/Dockerfile -t reg.example:5000/swarm-ai-lab/worker:v7 .",
        "$ docker build -f services/worker-go/Dockerfile -t reg.example:5000/swarm-ai-lab/worker-go:v7 .",
        "$ docker build -f services/worker-java/Dockerfile -t reg.example:5000/swarm-ai-lab/worker-java:v7 .",
        "$ docker build -f services/autoscaler/Dockerfile -t reg.example:5000/swarm-ai-lab/autoscaler:v7 .",
        "$ docker push reg.example:5000/swarm-ai-lab/master:v7",
        "$ docker push reg.example:5000/swarm-ai-lab/worker:v7",
        "$ docker push reg.example:5000/swarm-ai-lab/worker-go:v7",
        "$ docker push reg.example:5000/swarm-ai-lab/worker-java:v7",
        "$ docker push reg.example:5000/swarm-ai-lab/autoscaler:v7",
    ]
    assert commands[0].startswith("$ docker info --format") and commands[0].endswith("# skipped: dry run")


def test_build_without_push_pushes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    _, commands = dry_run(capsys, "build")
    assert not [c for c in commands if " push " in c]
    assert "$ docker build -f services/master/Dockerfile -t localhost:5000/swarm-ai-lab/master:latest ." in commands


def test_build_only_some_images_with_base_images_and_the_proxy_ca(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ca = tmp_path / "proxy-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    code, commands = dry_run(
        capsys,
        "build", "--only", "worker-go,worker-python", "--only", "worker-go", "--push", "--extra-ca", str(ca),
        "--build-arg", "GO_IMAGE=mirror.example/golang:1.26.8-bookworm",
        "--build-arg", "PYTHON_IMAGE=mirror.example/python:3.11.13-slim-bookworm",
    )  # fmt: skip
    assert code == 0
    secret = f"--secret id=extra_ca,src={ca}"
    # Each Dockerfile gets the base images it declares, and only those; BuildKit for the secret.
    assert commands[1:] == [
        "$ DOCKER_BUILDKIT=1 docker build -f services/worker/Dockerfile "
        f"--build-arg PYTHON_IMAGE=mirror.example/python:3.11.13-slim-bookworm {secret} "
        "-t localhost:5000/swarm-ai-lab/worker:latest .",
        "$ DOCKER_BUILDKIT=1 docker build -f services/worker-go/Dockerfile "
        f"--build-arg GO_IMAGE=mirror.example/golang:1.26.8-bookworm {secret} "
        "-t localhost:5000/swarm-ai-lab/worker-go:latest .",
        "$ docker push localhost:5000/swarm-ai-lab/worker:latest",
        "$ docker push localhost:5000/swarm-ai-lab/worker-go:latest",
    ]


def test_the_dockerfiles_declare_their_base_images_as_build_arguments() -> None:
    declared = {name: dockerfile_args(REPO_ROOT / path) for name, path in DOCKERFILES.items()}
    assert declared["master"] == {"PYTHON_IMAGE", "NODE_IMAGE"}
    assert declared["worker"] == {"PYTHON_IMAGE"}
    assert declared["worker-go"] == {"GO_IMAGE", "BASE_IMAGE"}
    assert dockerfile_args(REPO_ROOT / "no" / "Dockerfile") == set()


def test_deploy_dry_run_passes_config_version_registry_tag_and_workers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKERS", raising=False)
    monkeypatch.delenv("REGISTRY", raising=False)
    code, commands = dry_run(capsys, "deploy", "--workers", "3", "--tag", "v2", "--stack", "lab-a")
    assert code == 0
    # A bare number is Python workers, and the whole fleet: no Go or Java workers.
    assert commands[-1] == (
        f"$ CONFIG_VERSION={VERSION} REGISTRY=localhost:5000 TAG=v2 WORKERS=3 WORKERS_GO=0 WORKERS_JAVA=0 "
        "docker stack deploy -c stack.yml --with-registry-auth --prune lab-a"
    )
    created = [c.split()[4] for c in commands if c.startswith("$ docker secret create")]
    assert created == list(SECRETS)
    assert all(c.split()[5] == "-" for c in commands if c.startswith("$ docker secret create"))


def test_deploy_workers_of_every_language_set_their_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERS_JAVA", "7")  # the fleet names them all: --workers wins
    code, commands = dry_run(capsys, "deploy", "--workers", "python=1,go=3")
    assert code == 0
    assert " WORKERS=1 WORKERS_GO=3 WORKERS_JAVA=0 docker stack deploy" in commands[-1]
    _, commands = dry_run(capsys, "deploy", "--workers", "java=2,go=1,python=2")
    assert " WORKERS=2 WORKERS_GO=1 WORKERS_JAVA=2 docker stack deploy" in commands[-1]


def test_deploy_without_workers_passes_the_environments_replicas(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKERS", raising=False)
    monkeypatch.delenv("WORKERS_JAVA", raising=False)
    monkeypatch.setenv("WORKERS_GO", "4")
    _, commands = dry_run(capsys, "deploy")
    assert "WORKERS_GO=4 " in commands[-1]
    assert "WORKERS=" not in commands[-1] and "WORKERS_JAVA=" not in commands[-1]


def test_worker_variables_name_every_language() -> None:
    assert worker_variables((("go", 2),)) == {"WORKERS": "0", "WORKERS_GO": "2", "WORKERS_JAVA": "0"}
    with pytest.raises(UsageError, match="no worker service for rust"):
        worker_variables((("rust", 1),))


def test_deploy_encrypt_adds_the_encrypted_stack_file(capsys: pytest.CaptureFixture[str]) -> None:
    _, commands = dry_run(capsys, "deploy", "--encrypt")
    assert commands[-1].endswith(
        "docker stack deploy -c stack.yml -c stack.encrypted.yml --with-registry-auth --prune ai-system"
    )


def test_deploy_shows_the_stack_variables_of_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_PUBLISHED_PORT", "9999")
    monkeypatch.setenv("UNRELATED_VARIABLE", "nope")
    _, commands = dry_run(capsys, "deploy")
    assert "WEB_PUBLISHED_PORT=9999 " in commands[-1]
    assert "UNRELATED_VARIABLE" not in commands[-1]


def test_dry_run_never_shows_the_gemini_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    assert main(["swarm", "deploy", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert KEY not in out.out + out.err
    assert "the Gemini API key (from GEMINI_API_KEY)" in out.out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("scale", "worker-python", "5"), "$ docker service scale ai-system_worker-python=5"),
        (("scale", "worker-go", "3"), "$ docker service scale ai-system_worker-go=3"),
        (("scale", "worker-java", "0"), "$ docker service scale ai-system_worker-java=0"),
        (("rollback", "worker-java"), "$ docker service rollback ai-system_worker-java"),
        (("logs", "worker-go", "--tail", "5"), "$ docker service logs --timestamps --tail 5 ai-system_worker-go"),
        (("scale", "master", "0"), "$ docker service scale ai-system_master=0"),
        (("rollback", "master"), "$ docker service rollback ai-system_master"),
        (("stop",), "$ docker stack rm ai-system"),
        (("status",), "$ docker stack ps ai-system --filter desired-state=running"),
        (("logs", "mosquitto", "--tail", "20"), "$ docker service logs --timestamps --tail 20 ai-system_mosquitto"),
        (("logs", "master", "--follow"), "$ docker service logs --timestamps --follow ai-system_master"),
        (
            ("logs", "master", "-f", "--tail", "0"),
            "$ docker service logs --timestamps --follow --tail 0 ai-system_master",
        ),
        (
            ("update", "--tag", "v3", "worker-python"),
            "$ docker service update --image localhost:5000/swarm-ai-lab/worker:v3 --with-registry-auth "
            "ai-system_worker-python",
        ),
        (
            ("update", "--tag", "v3", "worker-go"),
            "$ docker service update --image localhost:5000/swarm-ai-lab/worker-go:v3 --with-registry-auth "
            "ai-system_worker-go",
        ),
        (
            ("update", "--tag", "v3", "worker-java"),
            "$ docker service update --image localhost:5000/swarm-ai-lab/worker-java:v3 --with-registry-auth "
            "ai-system_worker-java",
        ),
    ],
)
def test_operations_dry_run_print_their_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], expected: str
) -> None:
    monkeypatch.delenv("REGISTRY", raising=False)
    code, commands = dry_run(capsys, *argv)
    assert code == 0
    assert commands[-1] == expected


def test_update_without_services_updates_master_and_workers(capsys: pytest.CaptureFixture[str]) -> None:
    _, commands = dry_run(capsys, "update", "--tag", "v4", "--registry", "r:5000")
    assert [c.split()[-1] for c in commands if "service update" in c] == [
        "ai-system_master",
        "ai-system_worker-python",
        "ai-system_worker-go",
        "ai-system_worker-java",
        "ai-system_autoscaler",
    ]
    assert all("--with-registry-auth" in c for c in commands if "service update" in c)


def test_logs_without_service_shows_each_service(capsys: pytest.CaptureFixture[str]) -> None:
    _, commands = dry_run(capsys, "logs")
    assert [c.split()[-1] for c in commands[1:]] == [
        "ai-system_mosquitto",
        "ai-system_master",
        "ai-system_worker-python",
        "ai-system_worker-go",
        "ai-system_worker-java",
        "ai-system_autoscaler",
    ]


def test_stop_says_volumes_and_secrets_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["swarm", "stop", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ai-system_master_journal" in out and "ai-system_mosquitto_data" in out and "secrets" in out


# -- bad arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("scale", "no-such-service", "2"),
        ("scale", "worker-python", "-1"),
        ("scale", "worker-python", "two"),
        ("rollback", "web"),
        ("deploy", "--workers", "-3"),
        ("deploy", "--workers", "rust=2"),
        ("deploy", "--workers", "python=two"),
        ("build", "--only", "mosquitto"),
        ("build", "--only", ""),
        ("build", "--build-arg", "GO_IMAGE"),
        ("scale", "worker-rust", "1"),
        ("secrets", "--rotate", "everything"),
        ("verify", "--timeout", "0"),
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["swarm", *argv, "--dry-run"])
    assert exited.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("scale", "master", "2"), "0 or 1 replica"),
        (("scale", "mosquitto", "3"), "0 or 1 replica"),
        (("update", "mosquitto"), "pinned in stack.yml"),
        (("update", "web"), "unknown service 'web'"),
        (("build", "--build-arg", "RUST_IMAGE=x", "--only", "worker-go"), "no Dockerfile built here declares it"),
        (("build", "--extra-ca", "/no/such/ca.crt"), "no such file"),
        (("logs", "--follow"), "follows one service"),
        (("secrets", "--gemini-key-file", "/no/such/key"), "no such file"),
    ],
)
def test_arguments_that_cannot_work_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    assert main(["swarm", *argv, "--dry-run"]) == 2
    out = capsys.readouterr()
    assert message in out.err
    assert not [line for line in out.out.splitlines() if line.startswith("$ docker") and "info" not in line]


# -- the swarm checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "advice"),
    [
        ("inactive false", "docker swarm init"),
        ("active false", "not a manager"),
        ("locked false", "docker swarm unlock"),
        ("pending false", "'pending'"),
    ],
)
def test_a_node_that_is_no_manager_is_refused_with_the_fix(
    make_docker: Callable[..., Made], state: str, advice: str
) -> None:
    docker, fake, _ = make_docker({CHECK: (0, state + "\n", "")})
    with pytest.raises(NotManagerError, match=advice):
        swarm.deploy(docker, parse("deploy"))
    assert [c.args[0] for c in fake.calls] == ["info"]


def test_missing_node_labels_warn_with_the_command_that_adds_them(
    make_docker: Callable[..., Made], capsys: pytest.CaptureFixture[str]
) -> None:
    docker, _, _ = make_docker(
        {
            "node ls": (0, "id1 node-a true\nid2 node-b false\n", ""),
            "node inspect": (0, 'id1 node-a {"ai-system.broker":"true"}\nid2 node-b null\n', ""),
            "secret ls": (0, "\n".join(SECRETS), ""),
        }
    )
    assert swarm.deploy(docker, parse("deploy")) == 0
    err = capsys.readouterr().err
    assert "no node has the label ai-system.master=true" in err
    assert "docker node update --label-add ai-system.master=true node-a" in err
    assert "ai-system.broker" not in err


def test_deploy_runs_stack_deploy_with_the_variables_in_its_environment(make_docker: Callable[..., Made]) -> None:
    docker, fake, printed = make_docker({"secret ls": (0, "\n".join(SECRETS), "")})
    assert swarm.deploy(docker, parse("deploy", "--workers", "4", "--registry", "r:5000")) == 0
    (call,) = fake.ran("stack deploy")
    assert call.args == ["stack", "deploy", "-c", "stack.yml", "--with-registry-auth", "--prune", "ai-system"]
    assert (call.env["CONFIG_VERSION"], call.env["REGISTRY"], call.env["WORKERS"]) == (VERSION, "r:5000", "4")
    assert not fake.ran("secret create")
    assert any(line.startswith(f"$ CONFIG_VERSION={VERSION} ") for line in printed)


def test_deploy_encrypt_refuses_an_existing_unencrypted_network(make_docker: Callable[..., Made]) -> None:
    options = '{"com.docker.network.driver.overlay.vxlanid_list":"4097"}\n'
    docker, fake, _ = make_docker({"network inspect": (0, options, ""), "secret ls": (0, "\n".join(SECRETS), "")})
    with pytest.raises(DockerError, match="never changes an existing network"):
        swarm.deploy(docker, parse("deploy", "--encrypt"))
    assert not fake.ran("stack deploy")
    assert swarm.deploy(docker, parse("deploy")) == 0


def test_deploy_without_encrypt_warns_that_an_encrypted_network_stays(
    make_docker: Callable[..., Made], capsys: pytest.CaptureFixture[str]
) -> None:
    options = '{"encrypted":"","com.docker.network.driver.overlay.vxlanid_list":"4097"}\n'
    docker, fake, _ = make_docker({"network inspect": (0, options, ""), "secret ls": (0, "\n".join(SECRETS), "")})
    assert swarm.deploy(docker, parse("deploy")) == 0
    assert "exists encrypted and stays so" in capsys.readouterr().err
    assert swarm.deploy(docker, parse("deploy", "--encrypt")) == 0
    assert len(fake.ran("stack deploy")) == 2


def test_deploy_encrypt_creates_a_new_network_encrypted(make_docker: Callable[..., Made]) -> None:
    docker, fake, _ = make_docker(
        {
            "network inspect": (1, "", "Error: No such network: ai-system_ai-network"),
            "secret ls": (0, "\n".join(SECRETS), ""),
        }
    )
    assert swarm.deploy(docker, parse("deploy", "--encrypt")) == 0
    assert "stack.encrypted.yml" in fake.ran("stack deploy")[0].args


def test_secrets_travel_on_stdin_and_are_never_printed(make_docker: Callable[..., Made]) -> None:
    docker, fake, printed = make_docker({"secret ls": (0, "", "")}, GEMINI_API_KEY=KEY)
    assert ensure_secrets(docker, "ai-system", interactive=lambda: False) == list(SECRETS)
    created = {c.args[2]: c for c in fake.ran("secret create")}
    assert list(created) == list(SECRETS)
    assert all(c.args == ["secret", "create", c.args[2], "-"] for c in created.values())
    assert created[GEMINI_SECRET].stdin == KEY
    shown = "\n".join(printed) + "\n".join(" ".join(c.args) for c in fake.calls)
    for call in created.values():
        assert call.stdin and call.stdin.strip() not in shown
    assert KEY not in shown


def test_the_password_file_holds_the_hashes_of_the_created_passwords(make_docker: Callable[..., Made]) -> None:
    docker, fake, _ = make_docker({"secret ls": (0, f"{GEMINI_SECRET}\n", "")})
    assert ensure_secrets(docker, "ai-system", interactive=lambda: False) == [*MQTT_SECRETS, *MASTER_SECRETS]
    stdin = {c.args[2]: c.stdin or "" for c in fake.ran("secret create")}
    hashes = dict(line.split(":", 1) for line in stdin[PASSWD_SECRET].splitlines())
    assert set(hashes) == {"master", "worker", "observer"}
    for user, secret in PASSWORD_SECRETS.items():
        salt = base64.b64decode(hashes[user].split("$")[3])
        assert password_hash(stdin[secret], salt) == hashes[user]
    assert len({stdin[s] for s in PASSWORD_SECRETS.values()}) == 3


def test_no_key_anywhere_stores_a_blank_key_and_says_offline(make_docker: Callable[..., Made]) -> None:
    docker, fake, printed = make_docker({"secret ls": (0, "\n".join([*MQTT_SECRETS, *MASTER_SECRETS]), "")})
    assert ensure_secrets(docker, "ai-system", interactive=lambda: False) == [GEMINI_SECRET]
    (call,) = fake.ran("secret create")
    assert call.stdin == EMPTY_KEY
    assert any("offline model" in line for line in printed)


def test_the_key_is_asked_for_on_a_terminal(make_docker: Callable[..., Made]) -> None:
    docker, fake, _ = make_docker({"secret ls": (0, "\n".join(MQTT_SECRETS), "")})
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return KEY

    ensure_secrets(docker, "ai-system", interactive=lambda: True, prompt=prompt)
    assert len(asked) == 1 and fake.ran("secret create")[0].stdin == KEY


def test_the_key_file_wins_over_the_environment(make_docker: Callable[..., Made], tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-the-file\n")
    docker, fake, _ = make_docker({"secret ls": (0, "\n".join(MQTT_SECRETS), "")}, GEMINI_API_KEY=KEY)
    ensure_secrets(docker, "ai-system", key_file=tmp_path / "key", interactive=lambda: False)
    assert fake.ran("secret create")[0].stdin == "from-the-file"


def test_existing_secrets_are_left_alone(make_docker: Callable[..., Made]) -> None:
    docker, fake, printed = make_docker({"secret ls": (0, "\n".join(SECRETS), "")})
    assert ensure_secrets(docker, "ai-system") == []
    assert not fake.ran("secret create") and not fake.ran("secret rm")
    assert sum("exists: kept" in line for line in printed) == len(SECRETS)


def test_a_partial_mqtt_set_is_refused() -> None:
    with pytest.raises(SecretPlanError, match="--rotate mqtt"):
        secrets_to_create({GEMINI_SECRET, PASSWORD_SECRETS["master"]})
    assert secrets_to_create({*MQTT_SECRETS, *MASTER_SECRETS}) == [GEMINI_SECRET]
    assert secrets_to_create({GEMINI_SECRET, *MQTT_SECRETS}) == list(MASTER_SECRETS)
    assert secrets_to_create(None) == list(SECRETS)


def test_a_partial_mqtt_set_exits_1(
    make_docker: Callable[..., Made], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docker, fake, _ = make_docker({"secret ls": (0, f"{PASSWD_SECRET}\n", "")})
    monkeypatch.setattr(swarm, "Docker", lambda dry_run: docker)
    assert main(["swarm", "secrets"]) == 1
    assert "--rotate mqtt" in capsys.readouterr().err
    assert not fake.ran("secret create")


def test_rotation_is_refused_while_the_stack_runs(make_docker: Callable[..., Made]) -> None:
    docker, fake, _ = make_docker(
        {"secret ls": (0, "\n".join(SECRETS), ""), "stack services": (0, "ai-system_master\n", "")}
    )
    with pytest.raises(SecretsInUseError, match="lab swarm stop"):
        ensure_secrets(docker, "ai-system", rotate="gemini")
    assert not fake.ran("secret rm") and not fake.ran("secret create")


def test_rotation_removes_then_recreates_only_its_secrets(make_docker: Callable[..., Made]) -> None:
    docker, fake, _ = make_docker({"secret ls": (0, "\n".join(SECRETS), "")}, GEMINI_API_KEY=KEY)
    assert ensure_secrets(docker, "ai-system", rotate="gemini", interactive=lambda: False) == [GEMINI_SECRET]
    assert [c.args for c in fake.calls if c.args[0] == "secret" and c.args[1] != "ls"] == [
        ["secret", "rm", GEMINI_SECRET],
        ["secret", "create", GEMINI_SECRET, "-"],
    ]


# -- reading docker's output -------------------------------------------------------------------------


def test_replicas_and_nodes_are_read_from_docker_output() -> None:
    assert replicas("2/3") == (2, 3)
    assert replicas("1/1 (max 1 per node)") == (1, 1)
    assert replicas("") is None
    nodes = parse_nodes('a host-a {"ai-system.master":"true","zone":"a b"}\nb host-b null\n')
    assert [(n.hostname, n.labels) for n in nodes] == [
        ("host-a", {"ai-system.master": "true", "zone": "a b"}),
        ("host-b", {}),
    ]


def _services(master: str = "1/1", workers: str = "2/2", go: str = "2/2", java: str = "2/2") -> str:
    rows = [("mosquitto", "1/1"), ("master", master), ("worker-python", workers), ("worker-go", go)]
    rows += [("worker-java", java), ("autoscaler", "1/1")]
    return "\n".join(f'{{"Name":"ai-system_{name}","Replicas":"{count}"}}' for name, count in rows) + "\n"


RUNNING = '{"Name":"ai-system_master.1","Node":"n1","CurrentState":"Running 2 minutes ago","Error":""}\n'
PENDING = '{"Name":"ai-system_master.1","Node":"","CurrentState":"Pending 1 minute ago","Error":"no suitable node"}\n'


def _verify(docker: Docker, timeout: float = 0.0) -> list[Check]:
    ticks = iter(range(1000))
    return swarm_verify.verify(
        docker,
        "ai-system",
        "http://127.0.0.1:1",
        timeout,
        ask=lambda url, t: Check("question answered", True, "fake"),
        sleep=lambda s: None,
        clock=lambda: float(next(ticks)),
    )


def test_verify_passes_a_converged_healthy_stack(
    make_docker: Callable[..., Made], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workers of all three languages: 2 + 2 + 2.
    monkeypatch.setattr(swarm_verify, "web_check", lambda url, workers, token: Check("master web", workers == 6, ""))
    docker, fake, _ = make_docker(
        {
            "stack services": (0, _services(), ""),
            "stack ps": (0, RUNNING, ""),
            "ps -q": (0, "c1\nc2\n", ""),
            "inspect": (0, "ai-system_master.1.x healthy\nai-system_mosquitto.1.y healthy\n", ""),
        }
    )
    checks = _verify(docker)
    assert [c.ok for c in checks] == [True] * 5, [c.line() for c in checks]
    assert fake.ran("inspect")[0].args[-2:] == ["c1", "c2"]


def test_verify_fails_unconverged_pending_and_unhealthy(
    make_docker: Callable[..., Made], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swarm_verify, "web_check", lambda url, workers, token: Check("master web", True, ""))
    docker, fake, printed = make_docker(
        {
            "stack services": (0, _services(master="0/1"), ""),
            "stack ps": (0, PENDING, ""),
            "ps -q": (0, "c1\n", ""),
            "inspect": (0, "ai-system_worker-python.2.z unhealthy\n", ""),
        }
    )
    checks = {c.name: c for c in _verify(docker, timeout=12)}
    assert not checks["services converged"].ok and "master 0/1" in checks["services converged"].detail
    assert not checks["tasks running"].ok and "no suitable node" in checks["tasks running"].detail
    assert not checks["health here"].ok and "unhealthy" in checks["health here"].detail
    # It polled until the timeout, printing the commands only the first time.
    assert len(fake.ran("stack services")) > 1
    assert sum(line.startswith("$ docker stack services") for line in printed) == 1


def test_verify_of_a_stack_that_is_not_deployed_says_so(
    make_docker: Callable[..., Made], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swarm_verify, "web_check", lambda url, workers, token: Check("master web", False, "refused"))
    docker, _, _ = make_docker({"stack ps": (1, "", "nothing found in stack: ai-system\n")})
    checks = _verify(docker)
    assert [c.name for c in checks] == ["services converged", "master web", "question answered"]
    assert not checks[0].ok and "`lab swarm deploy` first" in checks[0].detail
    assert swarm_verify.health_check(None).ok


@pytest.mark.parametrize(("state", "fails"), [("completed", False), ("", False), ("rollback_completed", True)])
def test_update_fails_when_swarm_rolled_it_back_even_if_the_client_exits_0(
    make_docker: Callable[..., Made], state: str, fails: bool
) -> None:
    docker, fake, _ = make_docker({"service inspect": (0, state + "\n", "")})
    args = parse("update", "--tag", "v5", "--registry", "r:5000", "worker-python")
    if fails:
        with pytest.raises(DockerError, match="rolled it back"):
            swarm.update(docker, args)
    else:
        assert swarm.update(docker, args) == 0
    assert len(fake.ran("service update --image r:5000/swarm-ai-lab/worker:v5")) == 1
    assert fake.ran("service inspect")[0].args[-1] == "ai-system_worker-python"


def test_the_desired_workers_are_those_of_every_language() -> None:
    rows = json_lines(_services(workers="1/2", go="0/3", java="1/1"))
    assert swarm_verify.desired_workers("ai-system", rows) == 6
    only_python = [r for r in rows if not str(r["Name"]).endswith(("-go", "-java"))]
    assert swarm_verify.desired_workers("ai-system", only_python) == 2
    assert swarm_verify.desired_workers("ai-system", rows[:2]) is None


@dataclass
class FakeResponse:
    status_code: int
    body: Any

    @property
    def text(self) -> str:
        return json.dumps(self.body)

    def json(self) -> Any:
        return self.body

    def raise_for_status(self) -> None:
        pass


def _worker(worker_id: str, state: str = "idle") -> dict[str, Any]:
    language = worker_id.split("-worker-")[0]
    return {
        "worker_id": worker_id, "language": language, "state": state, "tasks_done": 0, "tasks_failed": 0,
        "current_task": None, "last_seen": 0,
    }  # fmt: skip


def test_the_master_web_check_counts_the_workers_of_every_language(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = [_worker("python-worker-aaaaaa"), _worker("go-worker-bbbbbb", "busy"), _worker("java-worker-cccccc")]
    workers.append(_worker("go-worker-dddddd", "offline"))
    status = {
        "workers": workers, "idle": 2, "busy": 1, "offline": 1, "queue_length": 0, "in_flight": 1,
        "undelivered": 0, "mqtt_connected": True,
    }  # fmt: skip

    def get(url: str, timeout: float, headers: dict[str, str] | None = None) -> FakeResponse:
        if url.endswith("/healthz"):
            return FakeResponse(200, {"status": "ok"})
        if (headers or {}).get("Authorization") != "Bearer op-token":
            return FakeResponse(401, {"detail": "operator token required"})
        return FakeResponse(200, status)

    monkeypatch.setattr("httpx.get", get)
    check = swarm_verify.web_check("http://m:8888", 3, "op-token")
    assert check.ok, check.line()
    assert check.detail.endswith("3 workers online of 3 (1 go, 1 java, 1 python)"), check.detail
    assert not swarm_verify.web_check("http://m:8888", 4, "op-token").ok
    refused = swarm_verify.web_check("http://m:8888", 3)
    assert not refused.ok and "OPERATOR_TOKEN" in refused.detail


def test_the_operator_token_is_read_from_the_environment_or_the_masters_container(
    make_docker: Callable[..., Made],
) -> None:
    docker, fake, printed = make_docker({"ps -q": (0, "c1\n", ""), "exec": (0, "tok-from-the-secret\n", "")})
    assert swarm_verify.operator_token(docker, "ai-system") == "tok-from-the-secret"
    assert fake.ran("exec")[0].args == ["exec", "c1", "cat", "/run/secrets/operator_token"]
    assert not any("tok-from-the-secret" in line for line in printed)
    docker, fake, _ = make_docker({"ps -q": (0, "c1\n", "")}, OPERATOR_TOKEN="tok-from-env")
    assert swarm_verify.operator_token(docker, "ai-system") == "tok-from-env" and not fake.ran("exec")
    docker, _, _ = make_docker({"ps -q": (0, "", "")})
    assert swarm_verify.operator_token(docker, "ai-system") is None


def test_the_operator_token_and_journal_key_are_random_and_rotate_alone(make_docker: Callable[..., Made]) -> None:
    docker, fake, _ = make_docker({"secret ls": (0, "\n".join(SECRETS), ""), "stack services": (0, "", "")})
    assert ensure_secrets(docker, "ai-system", rotate="operator") == [OPERATOR_SECRET]
    assert ensure_secrets(docker, "ai-system", rotate="journal") == [JOURNAL_KEY_SECRET]
    removed = [c.args[2:] for c in fake.ran("secret rm")]
    assert removed == [[OPERATOR_SECRET], [JOURNAL_KEY_SECRET]]
    values = {c.args[2]: c.stdin or "" for c in fake.ran("secret create")}
    assert len(values[OPERATOR_SECRET]) >= 40
    assert len(base64.b64decode(values[JOURNAL_KEY_SECRET], validate=True)) == 32
