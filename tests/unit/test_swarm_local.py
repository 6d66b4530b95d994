"""The pure parts of `lab swarm local`: the apt mirror read from the machine's sources, the host's extra CAs,
the stand-ins each fleet needs (and the host's Go behind the Go stand-in), the network snapshot's differences
and the state file that `down` reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import build_parser
from lab.paths import REPO_ROOT
from lab.swarm import standins
from lab.swarm.docker import Docker, DockerError
from lab.swarm.engine import EngineState, Host, NetworkSnapshot
from lab.swarm.local import LocalOptions, build_images, check_toolchains, deploy, explain_override, fleet_images
from lab.swarm.stack import DOCKERFILES, dockerfile_args
from lab.swarm.standins import (
    BASE_IMAGE,
    IMAGE_BUILD_ARGS,
    STANDINS,
    STANDINS_DIR,
    apt_mirror,
    bundle,
    host_extra_ca,
    host_goroot,
    make_standins,
    standins_for,
)
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


def test_a_fleet_builds_the_master_and_its_languages_images() -> None:
    assert fleet_images(parse_fleet(2)) == ["master", "worker"]
    assert fleet_images(parse_fleet("java=1,python=1")) == ["master", "worker", "worker-java"]
    assert fleet_images(parse_fleet("go=1,java=1")) == ["master", "worker-go", "worker-java"]


def test_each_image_needs_only_its_own_stand_ins_and_mosquittos_always() -> None:
    python = [s.tag for s in standins_for(["master", "worker"])]
    assert python == ["local/python:3.11-bookworm", "local/node:bookworm", "eclipse-mosquitto:2.0.22"]
    assert [s.tag for s in standins_for(["master", "worker-go"])] == [*python, "local/golang:bookworm"]
    assert standins_for(["worker-java"])[-2:] == list(STANDINS[-2:])
    assert standins_for(DOCKERFILES) == list(STANDINS)


def test_every_dockerfile_gets_a_stand_in_for_each_base_image_it_declares() -> None:
    made = {s.tag for s in STANDINS} | {BASE_IMAGE}
    assert set(IMAGE_BUILD_ARGS) == set(DOCKERFILES)
    for name, args in IMAGE_BUILD_ARGS.items():
        assert dockerfile_args(REPO_ROOT / DOCKERFILES[name]) <= set(args), name
        assert set(args.values()) <= made, name
    # BASE_IMAGE names another image in each Dockerfile: the Go worker's runtime is the minbase Debian itself.
    assert IMAGE_BUILD_ARGS["worker-go"]["BASE_IMAGE"] == BASE_IMAGE
    assert IMAGE_BUILD_ARGS["worker-java"]["BASE_IMAGE"] == "local/jre:17-bookworm"
    for standin in STANDINS:
        assert (STANDINS_DIR / standin.dockerfile).is_file()


def _fake_go(tmp_path: Path, version: str) -> Path:
    """A `go` that answers `go env GOROOT GOVERSION`."""
    go = tmp_path / "bin" / "go"
    go.parent.mkdir()
    go.write_text(f"#!/bin/sh\necho {tmp_path / 'goroot'}\necho {version}\n")
    go.chmod(0o755)
    return go


def test_the_go_stand_in_is_the_hosts_go_when_new_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_go(tmp_path, "go1.26.8").parent))
    (tmp_path / "go.mod").write_text("module example.org/w\n\ngo 1.26.0\n")
    assert host_goroot(tmp_path / "go.mod") == tmp_path / "goroot"
    (tmp_path / "go.mod").write_text("module example.org/w\n\ngo 1.27\n")
    with pytest.raises(DockerError, match=r"the host's Go is go1.26.8, .* asks for go 1.27"):
        host_goroot(tmp_path / "go.mod")
    monkeypatch.setattr(standins, "GO_MOD", tmp_path / "go.mod")
    with pytest.raises(DockerError, match=r"asks for go 1\.27"):
        check_toolchains(["master", "worker-go"], upstream_images=False)
    check_toolchains(["master", "worker-go"], upstream_images=True)


def test_no_go_on_the_host_refuses_a_go_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(standins, "HOST_GO", tmp_path / "none")
    with pytest.raises(DockerError, match="no Go toolchain on this host"):
        check_toolchains(["master", "worker", "worker-go"], upstream_images=False)
    check_toolchains(["master", "worker", "worker-java"], upstream_images=False)


def test_the_go_stand_in_is_built_from_the_hosts_goroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_go(tmp_path, "go1.99.0").parent))
    monkeypatch.setattr(standins, "image_exists", lambda docker, tag: tag == BASE_IMAGE)
    printed: list[str] = []
    docker = Docker(dry_run=True, out=printed.append, environ={"PATH": "/usr/bin"})
    made = make_standins(docker, Host(dry_run=True, out=printed.append), ["master", "worker-go"])
    assert list(made) == [s.tag for s in STANDINS[:4]]
    builds = [line.split("  # ")[0] for line in printed if " build " in line]
    assert builds[-1].endswith(f"-t local/golang:bookworm {tmp_path / 'goroot'}")
    assert f"-f {STANDINS_DIR / 'golang.Dockerfile'} --build-arg BASE={BASE_IMAGE} " in builds[-1]
    assert all(line.endswith(str(STANDINS_DIR)) for line in builds[:-1])


def test_local_builds_give_each_dockerfile_its_own_base_images() -> None:
    printed: list[str] = []
    docker = Docker(dry_run=True, out=printed.append, environ={"PATH": "/usr/bin"})
    build_images(docker, "local", None, IMAGE_BUILD_ARGS, images=["worker-go", "worker-java"])
    builds = [line for line in printed if " build " in line]
    assert "--build-arg GO_IMAGE=local/golang:bookworm --build-arg BASE_IMAGE=local/debian:bookworm " in builds[0]
    java = "--build-arg MAVEN_IMAGE=local/maven:3.8-jdk17-bookworm --build-arg BASE_IMAGE=local/jre:17-bookworm "
    assert java in builds[1]
    printed.clear()
    build_images(docker, "local", None, {}, images=["worker-go"])  # --upstream-images: the Dockerfiles' defaults
    assert "--build-arg" not in next(line for line in printed if " build " in line)


def test_local_builds_give_each_dockerfile_only_the_base_images_it_declares() -> None:
    printed: list[str] = []
    docker = Docker(dry_run=True, out=printed.append, environ={"PATH": "/usr/bin"})
    figures = build_images(docker, "local", None, IMAGE_BUILD_ARGS, images=["master", "worker"])
    builds = [line for line in printed if " build " in line]
    assert "--build-arg NODE_IMAGE=local/node:bookworm" in builds[0]
    assert "NODE_IMAGE" not in builds[1] and "--build-arg PYTHON_IMAGE=local/python:3.11-bookworm" in builds[1]
    assert list(figures) == ["master", "worker"]


def test_local_up_takes_a_fleet() -> None:
    args = build_parser().parse_args(["swarm", "local", "up", "--workers", "python=2,go=1"])
    assert args.workers == (("python", 2), ("go", 1))
    assert build_parser().parse_args(["swarm", "local", "up"]).workers == (("python", 2),)
