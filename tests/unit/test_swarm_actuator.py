"""The Swarm actuator through the real Docker SDK, against a stand-in of the few Engine API endpoints it uses.

There is no Docker engine here, so a small HTTP server on a unix socket answers what the SDK asks: `GET
/version` (the API version it then speaks), `GET /v1.41/services/{name}` and `POST
/v1.41/services/{id}/update?version=N`, with the engine's rules that matter to the actuator (a service found by
name or id, the update refused when its version is stale, the version moved on by each update). What it
proves: the SDK's requests carry the replicas and the version the actuator means, the rest of the spec goes
back unchanged, and each failure ends in an error that says what to do. What it cannot prove: that a real
engine then starts or stops tasks (tests/engine, and DEPLOY.md's section on autoscaling).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from services.autoscaler.swarm import SwarmActuator, SwarmError, main, swarm_actuator_from_env

NAME = "ai-system_worker-python"
SECRET_LOOKING = "not-a-secret-but-never-logged"


@dataclass
class FakeEngine:
    """The Engine API's services, as far as the actuator uses them; records every request."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, list[str]], Any]] = field(default_factory=list)
    # Bump a service's version between the next read and the update (a deploy made meanwhile).
    race: int = 0

    def find(self, key: str) -> dict[str, Any] | None:
        return next((s for s in self.services.values() if key in (s["ID"], s["Spec"]["Name"])), None)


def service(name: str, mode: dict[str, Any], version: int = 7) -> dict[str, Any]:
    return {
        "ID": f"id-{name}",
        "Version": {"Index": version},
        "Spec": {
            "Name": name,
            "Labels": {"com.docker.stack.namespace": name.split("_", 1)[0]},
            "Mode": mode,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "localhost:5000/swarm-ai-lab/worker:latest@sha256:" + "0" * 64,
                    "Env": [f"SOME_SETTING={SECRET_LOOKING}"],
                },
                "Networks": [{"Target": "net1"}],
            },
            "UpdateConfig": {"Parallelism": 1, "Order": "start-first"},
            "EndpointSpec": {"Mode": "dnsrr"},
        },
    }


def as_engine_reads(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as the engine decodes it: Go's encoding/json matches field names regardless of case, and the SDK
    writes the mode as `replicated` (the engine's own JSON says `Replicated`)."""
    modes = {"replicated": "Replicated", "global": "Global"}
    return {**spec, "Mode": {modes.get(k.lower(), k): v for k, v in (spec.get("Mode") or {}).items()}}


class _Handler(BaseHTTPRequestHandler):
    engine: FakeEngine

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.engine.requests.append(("GET", url.path, parse_qs(url.query), None))
        if url.path == "/version":
            self._send(200, {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.24"})
            return
        if url.path == "/v1.41/services":  # the list, filtered by labels (`key=value`)
            wanted = json.loads(parse_qs(url.query).get("filters", ["{}"])[0]).get("label", [])
            labelled = [
                s
                for s in self.engine.services.values()
                if all(s["Spec"]["Labels"].get(w.split("=", 1)[0]) == w.split("=", 1)[1] for w in wanted)
            ]
            self._send(200, labelled)
            return
        match = re.fullmatch(r"/v1\.41/services/([^/]+)", url.path)
        found = self.engine.find(match[1]) if match else None
        if found is None:
            self._send(404, {"message": f"service {match[1] if match else url.path} not found"})
            return
        if self.engine.race:
            self.engine.race -= 1
            found["Version"]["Index"] += 1
            self._send(200, {**found, "Version": {"Index": found["Version"]["Index"] - 1}})
            return
        self._send(200, found)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query, body = parse_qs(url.query), self._body()
        self.engine.requests.append(("POST", url.path, query, body))
        match = re.fullmatch(r"/v1\.41/services/([^/]+)/update", url.path)
        found = self.engine.find(match[1]) if match else None
        if found is None:
            self._send(404, {"message": "service not found"})
        elif query.get("version") != [str(found["Version"]["Index"])]:
            self._send(500, {"message": "rpc error: code = Unknown desc = update out of sequence"})
        else:
            found["Spec"] = as_engine_reads(body)
            found["Version"]["Index"] += 1
            self._send(200, {"Warnings": None})

    def address_string(self) -> str:  # a unix socket's peer has no address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # A unix socket's path must be short (108 bytes): tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="engine-") as name:
        yield Path(name)


@pytest.fixture
def engine(socket_dir: Path) -> Iterator[tuple[FakeEngine, str]]:
    fake = FakeEngine()
    fake.services = {
        NAME: service(NAME, {"Replicated": {"Replicas": 2}}),
        "global": service("ai-system_everywhere", {"Global": {}}),
    }
    handler = type("Handler", (_Handler,), {"engine": fake})
    server = _Server(str(socket_dir / "docker.sock"), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"unix://{socket_dir / 'docker.sock'}"
    finally:
        server.shutdown()
        server.server_close()


def updates(fake: FakeEngine) -> list[tuple[dict[str, list[str]], Any]]:
    return [(query, body) for method, _, query, body in fake.requests if method == "POST"]


async def test_scale_sends_the_replicas_and_the_version_it_read(
    engine: tuple[FakeEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, host = engine
    before = copy.deepcopy(fake.services[NAME]["Spec"])
    actuator = swarm_actuator_from_env(environ={"SWARM_SERVICE": NAME, "DOCKER_HOST": host})
    assert fake.requests == []  # made lazily: no call to the engine until the first use
    caplog.set_level(logging.DEBUG)
    assert await actuator.current() == 2
    await actuator.scale_to(5, idle_workers=["python-worker-aaaaaa"])
    [(query, body)] = updates(fake)
    assert query == {"version": ["7"]}
    assert as_engine_reads(body)["Mode"] == {"Replicated": {"Replicas": 5}}
    # Everything else of the spec goes back as it was: a scale changes the replicas only.
    assert {k: v for k, v in body.items() if k != "Mode"} == {k: v for k, v in before.items() if k != "Mode"}
    assert await actuator.current() == 5
    assert fake.services[NAME]["Version"]["Index"] == 8
    # Already there: nothing is sent. Down to zero is allowed.
    await actuator.scale_to(5, [])
    assert len(updates(fake)) == 1
    await actuator.scale_to(0, [])
    assert updates(fake)[-1][0] == {"version": ["8"]} and fake.services[NAME]["Spec"]["Mode"]["Replicated"] == {
        "Replicas": 0
    }
    await actuator.close()
    assert "ai-system_worker-python 2 -> 5 replicas" in caplog.text
    assert SECRET_LOOKING not in caplog.text


async def test_the_stacks_other_worker_services_are_a_fixed_part_of_the_fleet(
    engine: tuple[FakeEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, host = engine
    for name, replicas in (("ai-system_worker-go", 2), ("ai-system_worker-java", 1), ("ai-system_master", 1)):
        fake.services[name] = service(name, {"Replicated": {"Replicas": replicas}})
    fake.services["lab_worker-go"] = service("lab_worker-go", {"Replicated": {"Replicas": 5}})  # another stack
    actuator = swarm_actuator_from_env(NAME, host)
    caplog.set_level(logging.INFO, logger="services.autoscaler.swarm")
    # 2 Python workers, 2 Go and 1 Java: the master lists 5 workers, and so does the actuator.
    assert await actuator.current() == 5
    await actuator.scale_to(7, [])
    assert fake.services[NAME]["Spec"]["Mode"] == {"Replicated": {"Replicas": 4}}
    assert "2 -> 4 replicas (7 workers with 2 of ai-system_worker-go, 1 of ai-system_worker-java)" in caplog.text
    assert await actuator.current() == 7
    # Fewer than the fixed ones: no Python worker, and the others stay as they are.
    await actuator.scale_to(2, [])
    assert fake.services[NAME]["Spec"]["Mode"] == {"Replicated": {"Replicas": 0}}
    assert [body["Mode"] for _, body in updates(fake)] == [{"replicated": {"Replicas": r}} for r in (4, 0)]
    assert await actuator.current() == 3
    await actuator.close()


async def test_a_service_changed_meanwhile_is_read_again_not_overwritten(engine: tuple[FakeEngine, str]) -> None:
    fake, host = engine
    fake.race = 2  # the SDK reads twice per scale (get, then the spec it sends): stale for the first scale
    actuator = swarm_actuator_from_env(NAME, host)
    await actuator.scale_to(3, [])
    # Refused for the stale version it had read (7, the service being at 9 by then), sent again with 9.
    assert [query["version"] for query, _ in updates(fake)] == [["7"], ["9"]]
    assert fake.services[NAME]["Version"]["Index"] == 10
    assert fake.services[NAME]["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
    await actuator.close()


async def test_no_scale_during_a_rolling_update_so_a_rollback_still_goes_back(
    engine: tuple[FakeEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, host = engine
    fake.services[NAME]["UpdateStatus"] = {"State": "updating"}
    actuator = swarm_actuator_from_env(NAME, host)
    caplog.set_level(logging.INFO, logger="services.autoscaler.swarm")
    await actuator.scale_to(4, [])
    assert updates(fake) == []
    assert "is in an update (updating): scaling 2 -> 4 waits until it ends" in caplog.text
    fake.services[NAME]["UpdateStatus"] = {"State": "rollback_completed"}
    await actuator.scale_to(4, [])
    assert [body["Mode"] for _, body in updates(fake)] == [{"replicated": {"Replicas": 4}}]
    await actuator.close()


async def test_a_missing_service_says_how_the_name_is_made(engine: tuple[FakeEngine, str]) -> None:
    _, host = engine
    actuator = swarm_actuator_from_env("ai-system_worker-rust", host)
    with pytest.raises(SwarmError, match=r"no Swarm service 'ai-system_worker-rust'.*stack's name, an underscore"):
        await actuator.current()
    with pytest.raises(SwarmError, match="no Swarm service"):
        await actuator.scale_to(3, [])
    await actuator.close()


async def test_a_global_service_is_refused(engine: tuple[FakeEngine, str]) -> None:
    fake, host = engine
    actuator = swarm_actuator_from_env("ai-system_everywhere", host)
    with pytest.raises(SwarmError, match="is global, not replicated"):
        await actuator.scale_to(3, [])
    assert updates(fake) == []
    await actuator.close()


async def test_an_unreachable_engine_says_what_the_autoscaler_needs(socket_dir: Path) -> None:
    actuator = swarm_actuator_from_env(NAME, f"unix://{socket_dir / 'none.sock'}")
    with pytest.raises(SwarmError, match=r"cannot reach the Docker engine \(.*No such file.*/var/run/docker.sock"):
        await actuator.current()
    # The same actuator tries again on the next call (the engine may come back).
    with pytest.raises(SwarmError, match="cannot reach the Docker engine"):
        await actuator.scale_to(1, [])
    await actuator.close()


async def test_an_engine_gone_after_the_start_is_reported_too(socket_dir: Path) -> None:
    fake = FakeEngine(services={NAME: service(NAME, {"Replicated": {"Replicas": 1}})})
    server = _Server(str(socket_dir / "docker.sock"), type("Handler", (_Handler,), {"engine": fake}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    actuator = swarm_actuator_from_env(NAME, f"unix://{socket_dir / 'docker.sock'}")
    assert await actuator.current() == 1
    server.shutdown()
    server.server_close()
    (socket_dir / "docker.sock").unlink()
    with pytest.raises(SwarmError, match="cannot reach the Docker engine"):
        await actuator.scale_to(2, [])
    await actuator.close()


def test_the_service_must_be_named() -> None:
    with pytest.raises(ValueError, match="set SWARM_SERVICE"):
        swarm_actuator_from_env(environ={})


def test_the_health_check_reports_the_service_or_why_not(
    engine: tuple[FakeEngine, str],
    socket_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, host = engine
    monkeypatch.setenv("SWARM_SERVICE", NAME)
    monkeypatch.setenv("DOCKER_HOST", host)
    assert main(["--check"]) == 0
    assert capsys.readouterr().out.strip() == f"{NAME}: 2 replicas"
    monkeypatch.setenv("SWARM_SERVICE", "ai-system_everywhere")
    assert main(["--check"]) == 1
    assert "is global, not replicated" in capsys.readouterr().err
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_dir / 'none.sock'}")
    assert main(["--check"]) == 1
    assert "cannot reach the Docker engine" in capsys.readouterr().err
    assert main([]) == 2


def test_a_docker_client_can_be_given_as_it_is(engine: tuple[FakeEngine, str]) -> None:
    import docker

    _, host = engine
    client = docker.DockerClient(base_url=host, version="1.41")
    actuator = SwarmActuator(NAME, client)
    assert actuator._locked(actuator._current) == 2
    client.close()
