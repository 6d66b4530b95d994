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
from lab.swarm.stack_check import check, duration, reference_problems, schema_errors
from lab.system.haproxy import check_config, find_haproxy
from tests.conftest import require
from tests.netns.stack_hosts import stack_config as rendered_by_docker

STACK, ENCRYPTED, NO_IPVS = ROOT / "stack.yml", ROOT / "stack.encrypted.yml", ROOT / "stack.no-ipvs.yml"
HA, HA_TLS = ROOT / "stack.ha.yml", ROOT / "stack.ha.tls.yml"
VARIABLES = (
    "REGISTRY",
    "TAG",
    "MASTERS",
    "ETCD_LEASE_SECONDS",
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


# -- stack.ha.yml: standby masters, the journal in etcd (DEPLOY.md, section 15) ----------------------------------

ETCD_MEMBERS = ("etcd-1", "etcd-2", "etcd-3")


def test_docker_accepts_the_ha_stack_with_its_defaults() -> None:
    config = config_of(HA)
    services = config["services"]
    assert set(services) == {
        *ETCD_MEMBERS,
        "mosquitto",
        "master",
        "proxy",
        "worker-python",
        "worker-go",
        "worker-java",
        "autoscaler",
    }
    assert services["proxy"]["image"] == "localhost:5000/swarm-ai-lab/proxy:latest"
    assert {services[m]["image"] for m in ETCD_MEMBERS} == {"localhost:5000/swarm-ai-lab/etcd:latest"}
    assert schema_errors(config) == []
    assert reference_problems(config) == []
    # The netns harness reads it the same way (only its variables set).
    assert set(rendered_by_docker(HA)["services"]) == set(services)


def test_the_ha_stack_passes_the_static_checks() -> None:
    # The autoscaler's MASTER_URL is the proxy's: `master` names every replica, standbys included.
    assert check(HA) == []


def test_every_master_journals_in_etcd_and_stands_by_behind_the_proxy() -> None:
    services = config_of(HA)["services"]
    master = services["master"]
    env = master["environment"]
    assert env["JOURNAL_BACKEND"] == "etcd"
    endpoints = env["ETCD_ENDPOINTS"].split(",")
    assert endpoints == [f"{m}:2379" for m in ETCD_MEMBERS] and all(m in services for m in ETCD_MEMBERS)
    assert env["ETCD_LEASE_SECONDS"] == "5"
    assert env["MQTT_BROKERS"] == "tasks.mosquitto:1883"
    assert env["GRPC_ENDPOINT"] == "proxy:50051" and env["TRUSTED_PROXY_HOPS"] == "1"
    # Swarm fills the template in per task; docker leaves it alone.
    assert env["MASTER_NAME"] == "{{.Node.Hostname}}-{{.Task.Slot}}"
    assert "JOURNAL_PATH" not in env and "volumes" not in master and "ports" not in master
    deploy = master["deploy"]
    assert deploy["replicas"] == 3 and deploy["endpoint_mode"] == "dnsrr"
    assert deploy["placement"] == {"max_replicas_per_node": 1}
    assert deploy["update_config"]["order"] == "stop-first"
    assert master["healthcheck"]["test"] == ["CMD", "python", "-m", "services.master", "--check"]
    assert services["autoscaler"]["environment"]["MASTER_URL"] == "http://proxy:8888"
    assert config_of(HA, MASTERS="5")["services"]["master"]["deploy"]["replicas"] == 5


def test_only_the_proxy_publishes_ports_on_every_node_in_host_mode() -> None:
    services = config_of(HA, WEB_PUBLISHED_PORT="80")["services"]
    assert [name for name, s in services.items() if s.get("ports")] == ["proxy"]
    proxy = services["proxy"]
    assert [(p["target"], p["published"], p["mode"]) for p in proxy["ports"]] == [
        (8888, 80, "host"),
        (50051, 50051, "host"),
    ]
    assert proxy["deploy"]["mode"] == "global" and proxy["deploy"]["endpoint_mode"] == "dnsrr"
    [config] = proxy["configs"]
    assert config["target"] == "/etc/haproxy/haproxy.cfg"


def test_brokers_are_global_stateless_and_reached_by_name() -> None:
    services = config_of(HA)["services"]
    mosquitto = services["mosquitto"]
    assert mosquitto["deploy"]["mode"] == "global" and mosquitto["deploy"]["endpoint_mode"] == "dnsrr"
    assert "volumes" not in mosquitto and "placement" not in mosquitto["deploy"]
    # Workers take any broker (dnsrr), and send results through the proxies (the master tells them where).
    for language in ("python", "go", "java"):
        assert services[f"worker-{language}"]["environment"]["MQTT_HOST"] == "mosquitto"


def test_etcd_members_are_pinned_one_per_label_each_with_its_volume() -> None:
    config = config_of(HA)
    services = config["services"]
    volumes = []
    for name in ETCD_MEMBERS:
        member = services[name]
        env = member["environment"]
        deploy = member["deploy"]
        assert deploy["replicas"] == 1 and deploy["endpoint_mode"] == "dnsrr"
        assert deploy["placement"]["constraints"] == [f"node.labels.ai-system.{name} == true"]
        [volume] = member["volumes"]
        assert volume["type"] == "volume" and volume["target"] == "/var/lib/etcd"
        volumes.append(volume["source"])
        assert env["ETCD_NAME"] == name
        assert env["ETCD_INITIAL_CLUSTER"] == ",".join(f"{m}=http://{m}:2380" for m in ETCD_MEMBERS)
        assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"http://{name}:2380"
        assert env["ETCD_ADVERTISE_CLIENT_URLS"] == f"http://{name}:2379"
        assert (env["ETCD_AUTO_COMPACTION_MODE"], env["ETCD_AUTO_COMPACTION_RETENTION"]) == ("periodic", "5m")
        assert 1 << 30 <= int(env["ETCD_QUOTA_BACKEND_BYTES"]) <= 8 << 30
        assert (duration(member["stop_grace_period"]) or 0) >= 10
        test = member["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "etcdctl" and test[-2:] == ["endpoint", "health"]
        assert deploy["update_config"]["order"] == "stop-first"
    assert len(set(volumes)) == 3 and set(volumes) <= set(config["volumes"])


def test_the_proxys_config_passes_haproxy_check() -> None:
    try:
        binary = find_haproxy()
    except RuntimeError:
        require("haproxy", False, "sudo apt-get install haproxy (or make setup-test)")
        raise
    source = config_of(HA)["configs"]["proxy_haproxy"]["file"]
    # Docker's DNS (127.0.0.11) answers only inside a stack: `init-addr none` lets the check pass here.
    check_config(ROOT / source, binary)


def test_the_tls_overlay_gives_members_and_masters_their_certificates() -> None:
    config = config_of(HA, HA_TLS)
    assert schema_errors(config) == [] and reference_problems(config) == []
    services = config["services"]
    for name in ETCD_MEMBERS:
        env = services[name]["environment"]
        assert env["ETCD_LISTEN_CLIENT_URLS"] == "https://0.0.0.0:2379"
        assert env["ETCD_ADVERTISE_CLIENT_URLS"] == f"https://{name}:2379"
        assert env["ETCD_CLIENT_CERT_AUTH"] == "true"
        assert env["ETCDCTL_ENDPOINTS"].startswith("https://")
        targets = {f"/run/secrets/{s['target']}": s for s in services[name]["secrets"]}
        for variable in ("ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_TRUSTED_CA_FILE", "ETCDCTL_CERT", "ETCDCTL_KEY"):
            secret = targets[env[variable]]
            assert (secret["uid"], secret["gid"], secret["mode"]) == ("10001", "10001", 0o400)
    master = services["master"]
    targets = {f"/run/secrets/{s['target']}": s["source"] for s in master["secrets"]}
    env = master["environment"]
    assert [targets[env[v]] for v in ("ETCD_CA", "ETCD_CERT", "ETCD_KEY")] == [
        "etcd_ca",
        "etcd_master_cert",
        "etcd_master_key",
    ]
    # The rest of the stack is stack.ha.yml's.
    plain = config_of(HA)["services"]
    assert env["ETCD_ENDPOINTS"] == plain["master"]["environment"]["ETCD_ENDPOINTS"]
    assert {"journal_key", "operator_token", "mqtt_master_password"} <= set(targets.values())
    assert set(services) == set(plain)
