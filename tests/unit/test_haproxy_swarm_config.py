"""stack.ha.yml's proxy and etcd images, read as text (no process, no Docker): HAProxy's Swarm config
(services/proxy/haproxy.swarm.cfg) agrees with the config the lab renders (lab/system/haproxy.py) on what decides
where traffic goes and how fast it moves, so that the two do not drift; the images' Dockerfiles and the stack
agree on paths, ports and users; and the lab knows the two images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lab.paths import REPO_ROOT
from lab.swarm.stack import DOCKERFILES, HA_IMAGES, HA_NODE_LABELS, HA_STACK_FILE, dockerfile_args
from lab.swarm.stack_check import image_repository, image_user_and_entrypoint, load
from lab.swarm.standins import BASE_IMAGE, IMAGE_BUILD_ARGS
from lab.system.haproxy import LEADER_PATH, Backend, haproxy_config

SWARM_CONFIG = REPO_ROOT / "services" / "proxy" / "haproxy.swarm.cfg"
PROXY_DOCKERFILE = REPO_ROOT / "services" / "proxy" / "Dockerfile"
ETCD_DOCKERFILE = REPO_ROOT / "services" / "etcd" / "Dockerfile"
WEB_PORT, GRPC_PORT = 8888, 50051
Sections = dict[str, list[str]]


def sections(text: str) -> Sections:
    """A config's sections ("defaults", "backend masters_web", ...) -> their lines, stripped, comments dropped."""
    found: Sections = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = found.setdefault(line.strip(), [])
        elif current is not None:
            current.append(" ".join(line.split()))
    return found


@pytest.fixture(scope="module")
def swarm() -> Sections:
    return sections(SWARM_CONFIG.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lab() -> Sections:
    masters = [Backend(f"m{n}", f"10.0.0.{n}", WEB_PORT, GRPC_PORT) for n in (1, 2, 3)]
    return sections(haproxy_config(masters, WEB_PORT, GRPC_PORT, "0.0.0.0"))


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return load(REPO_ROOT / HA_STACK_FILE)


def pairs(words: list[str]) -> set[tuple[str, str]]:
    """`default-server inter 500ms fall 2 ...` -> {("inter", "500ms"), ("fall", "2"), ...}."""
    return set(zip(words[1::2], words[2::2], strict=False))


def without(lines: list[str], *prefixes: str) -> list[str]:
    return [line for line in lines if not line.startswith(prefixes)]


def test_both_have_the_same_sections_apart_from_dns_and_the_proxys_own_health(swarm: Sections, lab: Sections) -> None:
    assert set(swarm) - set(lab) == {"resolvers docker", "frontend health"}
    assert set(lab) <= set(swarm)


def test_global_and_defaults_agree_timeouts_retries_and_limits_included(swarm: Sections, lab: Sections) -> None:
    assert swarm["global"] == lab["global"]
    assert without(swarm["defaults"], "default-server") == without(lab["defaults"], "default-server")
    timeouts = [line for line in swarm["defaults"] if line.startswith("timeout ")]
    names = {line.split()[1] for line in timeouts}
    assert {"connect", "client", "server", "tunnel", "http-request", "http-keep-alive", "check"} <= names
    assert {"retries 1", "option redispatch"} <= set(swarm["defaults"])


def test_checks_timings_and_cut_sessions_agree_and_swarm_adds_only_dns(swarm: Sections, lab: Sections) -> None:
    [mine] = [line.split() for line in swarm["defaults"] if line.startswith("default-server")]
    [theirs] = [line.split() for line in lab["defaults"] if line.startswith("default-server")]
    assert pairs(theirs) <= pairs(mine)
    assert ("on-marked-down", "shutdown-sessions") in pairs(mine)
    assert ("fall", "2") in pairs(mine) and ("rise", "1") in pairs(mine)
    # What Swarm needs beyond the lab's: Docker's DNS, and slots that start empty (`haproxy -c` passes anywhere).
    assert pairs(mine) - pairs(theirs) == {("resolvers", "docker"), ("resolve-prefer", "ipv4"), ("init-addr", "none")}


@pytest.mark.parametrize("backend", ["backend masters_web", "backend masters_grpc"])
def test_backends_check_get_leader_and_expect_200_as_the_labs_do(backend: str, swarm: Sections, lab: Sections) -> None:
    assert without(swarm[backend], "server") == without(lab[backend], "server")
    assert f"http-check send meth GET uri {LEADER_PATH} ver HTTP/1.1 hdr Host localhost" in swarm[backend]
    assert "http-check expect status 200" in swarm[backend]
    assert "balance first" in swarm[backend]


def test_swarm_servers_are_every_master_replica_from_docker_dns(swarm: Sections) -> None:
    assert swarm["backend masters_web"] == [
        *without(swarm["backend masters_web"], "server"),
        f"server-template master 5 tasks.master:{WEB_PORT} check",
    ]
    # gRPC in TCP mode, up exactly when the same replica's web port says it leads.
    assert (
        swarm["backend masters_grpc"][-1] == f"server-template master 5 tasks.master:{GRPC_PORT} check port {WEB_PORT}"
    )
    assert "nameserver dns 127.0.0.11:53" in swarm["resolvers docker"]


@pytest.mark.parametrize("frontend", ["frontend web", "frontend grpc"])
def test_frontends_agree_on_mode_forwarding_and_port(frontend: str, swarm: Sections, lab: Sections) -> None:
    assert without(swarm[frontend], "bind") == without(lab[frontend], "bind")
    [mine], [theirs] = ([line for line in s[frontend] if line.startswith("bind ")] for s in (swarm, lab))
    assert mine.rsplit(":", 1)[1] == theirs.rsplit(":", 1)[1]
    assert mine == f"bind :{mine.rsplit(':', 1)[1]}"  # every address of the container


def test_the_swarm_config_keeps_the_masters_port_limit(swarm: Sections) -> None:
    # Five slots: MASTERS may be up to five (one per node); fewer leave slots empty.
    assert all(" 5 " in line for s in swarm.values() for line in s if line.startswith("server-template"))


# -- the proxy's image and service -------------------------------------------------------------------------------


def healthcheck_of_dockerfile(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert found, f"{path} has no exec-form HEALTHCHECK"
    command: list[str] = json.loads(found[1])
    return command


def test_the_proxy_health_check_asks_the_monitor_uri_the_config_serves(swarm: Sections, stack: dict[str, Any]) -> None:
    assert "monitor-uri /healthz" in swarm["frontend health"]
    assert "bind 127.0.0.1:8404" in swarm["frontend health"]
    service = stack["services"]["proxy"]
    assert service["healthcheck"]["test"] == ["CMD", *healthcheck_of_dockerfile(PROXY_DOCKERFILE)]
    assert "/dev/tcp/127.0.0.1/8404" in service["healthcheck"]["test"][-1]
    assert "GET /healthz" in service["healthcheck"]["test"][-1]


def test_the_proxy_reads_the_config_where_the_stack_puts_it(stack: dict[str, Any]) -> None:
    user, entrypoint = image_user_and_entrypoint(PROXY_DOCKERFILE)
    assert entrypoint[:2] == ["haproxy", "-db"]
    [config] = stack["services"]["proxy"]["configs"]
    assert entrypoint[entrypoint.index("-f") + 1] == config["target"] == "/etc/haproxy/haproxy.cfg"
    assert stack["configs"][config["source"]]["file"] == "./services/proxy/haproxy.swarm.cfg"
    assert user == "10001:10001"


def test_the_etcd_health_check_is_the_stacks(stack: dict[str, Any]) -> None:
    command = healthcheck_of_dockerfile(ETCD_DOCKERFILE)
    for name in ("etcd-1", "etcd-2", "etcd-3"):
        assert stack["services"][name]["healthcheck"]["test"] == ["CMD", *command]
    assert command[0] == "etcdctl" and command[-2:] == ["endpoint", "health"]
    user, entrypoint = image_user_and_entrypoint(ETCD_DOCKERFILE)
    assert (user, entrypoint) == ("10001:10001", ["etcd"])


@pytest.mark.parametrize("dockerfile", [PROXY_DOCKERFILE, ETCD_DOCKERFILE])
def test_packages_install_with_a_policy_rc_d_that_stops_their_services_starting(dockerfile: Path) -> None:
    text = dockerfile.read_text(encoding="utf-8")
    policy = text.index("exit 101\\n' > /usr/sbin/policy-rc.d")
    install = text.index("apt-get install")
    removed = text.index("rm -f /usr/sbin/policy-rc.d")
    assert policy < install < removed
    assert "rm -rf /var/lib/apt/lists/*" in text


# -- the lab knows the images ----------------------------------------------------------------------------------------


def test_the_lab_builds_both_images_on_the_debian_base() -> None:
    for name in ("proxy", "etcd"):
        assert (REPO_ROOT / DOCKERFILES[name]).is_file()
        assert dockerfile_args(REPO_ROOT / DOCKERFILES[name]) == {"BASE_IMAGE"}
        assert IMAGE_BUILD_ARGS[name] == {"BASE_IMAGE": BASE_IMAGE}


def test_ha_images_and_labels_are_the_stacks(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for service, name in HA_IMAGES.items():
        assert image_repository(services[service]["image"]) == f"swarm-ai-lab/{name}"
        assert name in DOCKERFILES
    for label, service in HA_NODE_LABELS.items():
        assert services[service]["deploy"]["placement"]["constraints"] == [f"node.labels.{label} == true"]
