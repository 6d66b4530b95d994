"""`docker stack config` (the real Docker client, which needs no daemon for it) accepts the stack files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.paths import REPO_ROOT as ROOT
from lab.swarm.stack_check import reference_problems, schema_errors
from tests.conftest import require

STACK, ENCRYPTED, NO_IPVS = ROOT / "stack.yml", ROOT / "stack.encrypted.yml", ROOT / "stack.no-ipvs.yml"
VARIABLES = (
    "REGISTRY",
    "TAG",
    "WORKERS",
    "WEB_PUBLISHED_PORT",
    "GRPC_PUBLISHED_PORT",
    "TOPIC_PREFIX",
    "AUTOSCALER",
    "AUTOSCALE_MIN",
    "AUTOSCALE_MAX",
)


def stack_config(*files: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """`docker stack config -c FILE...` with only `variables` set among the stack's own variables."""
    require("docker (the client)", shutil.which("docker") is not None, "install docker.io (or docker-ce-cli)")
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | variables
    command = ["docker", "stack", "config", *(arg for f in files for arg in ("-c", str(f)))]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=30, check=False)


def config_of(*files: Path, **variables: str) -> dict[str, Any]:
    done = stack_config(*files, **variables)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = yaml.safe_load(done.stdout)
    return data


def test_docker_accepts_the_stack_with_its_defaults() -> None:
    config = config_of(STACK)
    services = config["services"]
    assert set(services) == {"mosquitto", "master", "worker-python", "worker-go", "worker-java", "autoscaler"}
    assert services["master"]["image"] == "localhost:5000/swarm-ai-lab/master:latest"
    assert services["worker-go"]["image"] == "localhost:5000/swarm-ai-lab/worker-go:latest"
    # The original system's default: two workers of each language.
    assert [services[f"worker-{lang}"]["deploy"]["replicas"] for lang in ("python", "go", "java")] == [2, 2, 2]
    assert [(p["target"], p["published"]) for p in services["master"]["ports"]] == [(8888, 8888), (50051, 50051)]
    assert services["mosquitto"]["environment"]["TOPIC_PREFIX"] == "upb"
    # `$$` reaches the container as a single `$`, for its shell.
    assert '"$TOPIC_PREFIX/master/status"' in " ".join(services["mosquitto"]["healthcheck"]["test"])
    assert config["networks"]["ai-network"] == {"driver": "overlay", "attachable": True}
    assert schema_errors(config) == []
    assert reference_problems(config) == []


def test_the_autoscaler_reaches_the_engine_on_a_manager_as_docker_reads_it() -> None:
    autoscaler = config_of(STACK)["services"]["autoscaler"]
    assert autoscaler["image"] == "localhost:5000/swarm-ai-lab/autoscaler:latest"
    assert autoscaler["deploy"]["replicas"] == 1
    assert autoscaler["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert autoscaler["user"] == "0:0" and autoscaler["cap_drop"] == ["ALL"]
    [socket] = autoscaler["volumes"]
    assert socket == {
        "type": "bind",
        "source": "/var/run/docker.sock",
        "target": "/var/run/docker.sock",
        "read_only": True,
    }
    env = autoscaler["environment"]
    # Docker leaves Swarm's template alone: the engine fills it in per task, with the stack's name.
    assert env["SWARM_SERVICE"] == '{{index .Service.Labels "com.docker.stack.namespace"}}_worker-python'
    assert (env["ACTUATOR"], env["MASTER_URL"], env["AUTOSCALE_MIN"], env["AUTOSCALE_MAX"]) == (
        "swarm",
        "http://master:8888",
        "2",
        "10",
    )
    off = config_of(STACK, AUTOSCALER="0", AUTOSCALE_MIN="1", AUTOSCALE_MAX="4")["services"]["autoscaler"]
    assert off["deploy"]["replicas"] == 0
    assert (off["environment"]["AUTOSCALE_MIN"], off["environment"]["AUTOSCALE_MAX"]) == ("1", "4")


def test_variables_choose_images_replicas_and_ports() -> None:
    config = config_of(
        STACK, REGISTRY="reg.example:5000", TAG="v7", WORKERS="5", WORKERS_JAVA="0", WEB_PUBLISHED_PORT="80"
    )
    services = config["services"]
    assert services["worker-python"]["image"] == "reg.example:5000/swarm-ai-lab/worker:v7"
    assert services["worker-java"]["image"] == "reg.example:5000/swarm-ai-lab/worker-java:v7"
    assert services["worker-python"]["deploy"]["replicas"] == 5
    assert (services["worker-go"]["deploy"]["replicas"], services["worker-java"]["deploy"]["replicas"]) == (2, 0)
    assert services["master"]["ports"][0]["published"] == 80


def test_the_encryption_file_keeps_the_network_whole() -> None:
    config = config_of(STACK, ENCRYPTED)
    network = config["networks"]["ai-network"]
    assert network == {"driver": "overlay", "attachable": True, "driver_opts": {"encrypted": ""}}
    assert schema_errors(config) == []
    assert reference_problems(config) == []


def unordered(value: Any) -> Any:
    """`value` with its lists sorted (merging stack files reorders secrets and configs)."""
    if isinstance(value, dict):
        return {k: unordered(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((unordered(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def test_the_no_ipvs_override_changes_only_endpoints_and_port_modes() -> None:
    plain, merged = unordered(config_of(STACK)), unordered(config_of(STACK, NO_IPVS))
    for name, service in merged["services"].items():
        assert service["deploy"].pop("endpoint_mode") == "dnsrr", name
        ports = service.pop("ports", None)
        original = plain["services"][name]
        if ports is not None:
            assert [p["mode"] for p in ports] == ["host", "host"]
            assert [{**p, "mode": "ingress"} for p in ports] == original.pop("ports")
        assert service == original, f"{name}: the override changes more than endpoints and ports"
    assert {k: v for k, v in merged.items() if k != "services"} == {k: v for k, v in plain.items() if k != "services"}
    assert schema_errors(config_of(STACK, NO_IPVS)) == []
    assert reference_problems(config_of(STACK, NO_IPVS)) == []


def test_docker_rejects_a_broken_stack(tmp_path: Path) -> None:
    broken = tmp_path / "stack.yml"
    text = STACK.read_text(encoding="utf-8").replace("replicas: ${WORKERS:-2}", "replicas: two", 1)
    assert text != STACK.read_text(encoding="utf-8")
    broken.write_text(text, encoding="utf-8")
    done = stack_config(broken)
    assert done.returncode != 0
    assert "replicas" in done.stderr


@pytest.mark.parametrize("service", ["master", "worker-python", "worker-go", "worker-java", "autoscaler"])
def test_our_images_are_built_from_files_in_this_repository(service: str) -> None:
    image = config_of(STACK)["services"][service]["image"]
    name = image.rsplit("/", 1)[1].split(":")[0]
    assert (ROOT / "services" / name / "Dockerfile").is_file(), image
