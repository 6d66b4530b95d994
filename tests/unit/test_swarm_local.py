"""The pure parts of `lab swarm local`: the apt mirror read from the machine's sources, the host's extra CAs,
the network snapshot's differences and the state file that `down` reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import build_parser
from lab.swarm.docker import Docker, DockerError
from lab.swarm.engine import EngineState, NetworkSnapshot
from lab.swarm.local import LocalOptions, build_images, deploy, explain_override, fleet_images
from lab.swarm.standins import BUILD_ARGS, apt_mirror, bundle, host_extra_ca
from lab.system.workers import parse_fleet

DEB822 = """\
Types: deb
# a comment: http://snapshot.example/archive
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_comes_from_the_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(DEB822)
    (tmp_path / "other.list.disabled").write_text("deb http://elsewhere.example/debian bookworm main\n")
    assert apt_mirror("bookworm", (tmp_path / "sources.list", tmp_path)) == "http://mirror.example/debian"


def test_the_mirror_comes_from_a_one_line_list_preferring_plain_http(tmp_path: Path) -> None:
    listed = tmp_path / "sources.list"
    listed.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg] https://tls.example/debian bookworm main\n"
        "deb http://plain.example/debian bookworm main contrib\n"
    )
    assert apt_mirror("bookworm", (listed,)) == "http://plain.example/debian"


def test_no_source_for_the_suite_says_so(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian bullseye main\n")
    with pytest.raises(DockerError, match="no apt source for bookworm"):
        apt_mirror("bookworm", (tmp_path / "sources.list",))


def test_the_hosts_extra_cas_become_one_bundle(tmp_path: Path) -> None:
    (tmp_path / "a.crt").write_text("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.crt").write_text("-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n")
    (tmp_path / "readme.txt").write_text("not a certificate")
    found = host_extra_ca(tmp_path)
    assert [p.name for p in found] == ["a.crt", "b.crt"]
    text = bundle(found, tmp_path / "bundle.pem").read_text()
    assert text.count("BEGIN CERTIFICATE") == 2 and text.endswith("-----END CERTIFICATE-----\n")
    assert host_extra_ca(tmp_path / "missing") == []


def test_the_snapshot_names_what_an_engine_left_behind() -> None:
    before = NetworkSnapshot(["lo", "eth0"], [], {"net/ipv4/ip_forward": "0"})
    after = NetworkSnapshot(["lo", "eth0", "docker0"], ["table ip filter"], {"net/ipv4/ip_forward": "1"})
    assert before.differences(after) == [
        "link docker0 is new",
        "nft table ip filter is new",
        "net/ipv4/ip_forward is 1 (was 0)",
    ]
    assert before.differences(before) == []


def test_the_state_file_round_trips(tmp_path: Path) -> None:
    state = EngineState(NetworkSnapshot(["lo"], ["table inet mine"], {"net/ipv4/ip_forward": "0"}), stack="s")
    state.dockerd_pid, state.swarm_created, state.secrets_created = 42, True, ["ai-system-mqtt-passwd"]
    state.save(tmp_path)
    assert EngineState.load(tmp_path) == state
    assert EngineState.load(tmp_path / "none") is None


def test_the_override_is_explained_by_its_header() -> None:
    lines: list[str] = []
    explain_override(Docker(dry_run=True, out=lines.append))
    assert lines[0].startswith("# Layered on stack.yml") and all(line.startswith("#") for line in lines)
    assert any("dnsrr" in line for line in lines) and any("mode: host" in line for line in lines)


def test_a_local_deployment_has_python_workers_only_unless_asked() -> None:
    printed: list[str] = []
    docker = Docker(dry_run=True, out=printed.append, environ={"PATH": "/usr/bin", "WORKERS_GO": "5"})
    deploy(docker, LocalOptions())
    command = printed[-1]
    assert " WORKERS=2 WORKERS_GO=0 WORKERS_JAVA=0 " in command, command
    assert command.endswith("stack deploy -c stack.yml -c stack.no-ipvs.yml --prune --resolve-image never ai-system")
    deploy(docker, LocalOptions(workers="python=1,go=2"))
    assert " WORKERS=1 WORKERS_GO=2 WORKERS_JAVA=0 " in printed[-1]


def test_go_and_java_images_need_the_upstream_bases() -> None:
    assert fleet_images(parse_fleet(2), upstream_images=False) == ["master", "worker"]
    assert fleet_images(parse_fleet("go=1,java=1"), upstream_images=True) == ["master", "worker-go", "worker-java"]
    with pytest.raises(DockerError, match="no stand-in base images for the go and java worker"):
        fleet_images(parse_fleet("python=1,go=1,java=1"), upstream_images=False)


def test_local_builds_give_each_dockerfile_only_the_base_images_it_declares() -> None:
    printed: list[str] = []
    docker = Docker(dry_run=True, out=printed.append, environ={"PATH": "/usr/bin"})
    figures = build_images(docker, "local", None, BUILD_ARGS, images=["master", "worker"])
    builds = [line for line in printed if " build " in line]
    assert "--build-arg NODE_IMAGE=local/node:bookworm" in builds[0]
    assert "NODE_IMAGE" not in builds[1] and "--build-arg PYTHON_IMAGE=local/python:3.11-bookworm" in builds[1]
    assert list(figures) == ["master", "worker"]


def test_local_up_takes_a_fleet() -> None:
    args = build_parser().parse_args(["swarm", "local", "up", "--workers", "python=2,go=1"])
    assert args.workers == (("python", 2), ("go", 1))
    assert build_parser().parse_args(["swarm", "local", "up"]).workers == (("python", 2),)
