"""Shared fixtures: real systems (Mosquitto, master, workers as processes) and what tests need around them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from lab.system.local import LocalCluster
from tests.peers import RawWorker, peer_for

IN_CI = bool(os.environ.get("CI"))
TESTS = Path(__file__).resolve().parent
# Each test folder is a marker (declared in pyproject.toml), so `pytest -m unit` runs the unit tests alone.
FOLDER_MARKERS = ("unit", "integration", "browser", "notebooks", "netns", "engine", "conformance")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the folder it lives in: tests/unit/... is `unit`, tests/integration/... `integration`."""
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS) and (folder := path.relative_to(TESTS).parts[0]) in FOLDER_MARKERS:
            item.add_marker(folder)


def require(what: str, found: bool, how: str) -> None:
    """A missing service fails in CI and skips locally with the way to install it."""
    if found:
        return
    message = f"{what} is missing: {how}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(f"{message} (CI fails here)")


def require_mosquitto() -> None:
    """Real Mosquitto must be installed."""
    found = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
    require("mosquitto", found, "run `make setup` or `sudo apt-get install mosquitto`")


ClusterFactory = Callable[..., LocalCluster]
C = TypeVar("C", bound=LocalCluster)


def clusters(tmp_path: Path, cls: type[C], **defaults: object) -> Iterator[Callable[..., C]]:
    """A factory of `cls` systems on free ports with the offline model, their logs in `tmp_path`/cluster.log
    (`defaults`, then each call's keywords, override the common options); every one is stopped at the end."""
    started: list[C] = []
    logs = tmp_path / "cluster.log"

    def sink(name: str, line: str) -> None:
        with logs.open("a") as f:
            f.write(f"{name} | {line}\n")

    def make(**kwargs: object) -> C:
        options: dict[str, object] = {
            "workers": 2,
            "web_port": 0,
            "grpc_port": 0,
            "mqtt_port": 0,
            "model_mode": "offline",
            "log_sink": sink,
            **defaults,
            **kwargs,
        }
        cluster = cls(**options)  # type: ignore[arg-type]
        started.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Start real systems on free ports; every one is stopped when the test ends."""
    require_mosquitto()
    yield from clusters(tmp_path, LocalCluster, work_seconds=0.2)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One real system shared by a module: 2 workers, 1 s of simulated work, offline model."""
    require_mosquitto()
    logs = tmp_path_factory.mktemp("system") / "cluster.log"

    def sink(name: str, line: str) -> None:
        with logs.open("a") as f:
            f.write(f"{name} | {line}\n")

    with LocalCluster(
        workers=2, work_seconds=1.0, web_port=0, grpc_port=0, mqtt_port=0, model_mode="offline", log_sink=sink
    ) as cluster:
        yield cluster


@pytest.fixture
def lone_raw_worker(cluster_factory: ClusterFactory) -> Iterator[tuple[LocalCluster, RawWorker]]:
    """A system whose only worker is a hand-driven peer (`go-worker-manual`), so the test decides every
    result."""
    cluster = cluster_factory(workers=0)
    peer = peer_for(cluster, "go-worker-manual")
    peer.register()
    try:
        yield cluster, peer
    finally:
        peer.close()
