"""The conformance suite's fixtures: one worker language per parameter (`CONFORMANCE_WORKERS`, default
`python,go,java`), one shared system per language for the cases that leave it as it was, fresh systems for
the ones that break something, and the instruments around them (tests/conformance/harness.py)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from lab.system import workers
from lab.system.local import LocalCluster
from lab.system.ports import free_port
from lab.system.workers import LANGUAGES, WorkerKind
from tests.conformance.harness import Logs, Spy, TapProcess, Worker, start_worker
from tests.conftest import ClusterFactory, require, require_mosquitto
from tests.fakes.gemini import FakeGeminiThread
from tests.waiting import wait_until

WORK_SECONDS = 0.2
GEMINI_TIMEOUT_SECONDS = 1
KEEPALIVE_SECONDS = 2
# Variables of the shell that would change what a worker does here; the suite sets its own.
_SHELL_SETTINGS = ("GEMINI_API_KEY", "GEMINI_API_KEY_FILE", "GEMINI_MODEL", "GEMINI_BASE_URL", "MODEL_MODE")


def languages() -> list[str]:
    """The worker languages under test: `CONFORMANCE_WORKERS` (comma list), default all of them."""
    chosen = [x.strip() for x in os.environ.get("CONFORMANCE_WORKERS", ",".join(LANGUAGES)).split(",") if x.strip()]
    unknown = [x for x in chosen if x not in LANGUAGES]
    if unknown:
        raise pytest.UsageError(f"CONFORMANCE_WORKERS: unknown language(s) {unknown}; known: {', '.join(LANGUAGES)}")
    return chosen


@pytest.fixture(scope="session", params=languages())
def worker_kind(request: pytest.FixtureRequest) -> WorkerKind:
    """The worker under test; one that is not built here fails in CI and skips locally, saying how to build."""
    kind = workers.worker_kind(str(request.param))
    problem = kind.problem()
    require(f"the {kind.language} worker", problem is None, problem or "")
    return kind


@pytest.fixture(scope="session")
def clean_environ() -> Iterator[None]:
    """The suite's processes do not inherit a Gemini key, model or mode from the shell."""
    with pytest.MonkeyPatch.context() as patch:
        for name in _SHELL_SETTINGS:
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def fake_gemini(clean_environ: None) -> Iterator[FakeGeminiThread]:
    """The fake Gemini REST API (tests/fakes/gemini.py), shared by every language; `fake-slow` keys wait 30 s."""
    fake = FakeGeminiThread(slow_seconds=30)
    fake.start()
    yield fake
    fake.stop()


def suite_env(fake: FakeGeminiThread) -> dict[str, str]:
    """Settings every service of the suite's systems gets (workers read theirs, the master ignores the rest)."""
    return {
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_TIMEOUT_SECONDS": str(GEMINI_TIMEOUT_SECONDS),
        "MQTT_KEEPALIVE": str(KEEPALIVE_SECONDS),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # The whole contract, per-task messages included (case 21 checks a worker under a lean master).
        "TASK_MESSAGES": "true",
    }


@dataclass
class Stack:
    """A system and its instruments: the cluster (master, Mosquitto), the gRPC tap the master advertises
    as its endpoint, the MQTT spy, every process's log lines and the fake Gemini."""

    kind: WorkerKind
    cluster: LocalCluster
    logs: Logs
    spy: Spy
    fake: FakeGeminiThread
    tap: TapProcess | None = None

    @property
    def language(self) -> str:
        """The worker language under test."""
        return self.kind.language

    def worker(self, env: Mapping[str, str] | None = None, wait: bool = True) -> Worker:
        """Start one worker of the language under test."""
        return start_worker(self.cluster, self.language, env, wait)

    def worker_lines(self, worker: Worker) -> list[str]:
        """The output lines of one worker process."""
        return self.logs.of(worker.name)

    def live_workers(self) -> int:
        """Workers the master believes idle or busy."""
        status = self.cluster.status()
        return int(status["idle"]) + int(status["busy"])


@pytest.fixture(scope="session")
def shared_stack(
    worker_kind: WorkerKind, fake_gemini: FakeGeminiThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One system per language for the cases that leave it as they found it: no workers of its own (each
    test starts its own), nothing restarted, and the master's results pass through the gRPC tap."""
    require_mosquitto()
    logs = Logs()
    grpc_port = free_port()
    tap = TapProcess(free_port(), f"127.0.0.1:{grpc_port}")
    cluster = LocalCluster(
        workers=0,
        work_seconds=WORK_SECONDS,
        web_port=0,
        grpc_port=grpc_port,
        mqtt_port=0,
        model_mode="auto",
        restart=False,
        log_sink=logs,
        extra_env={**suite_env(fake_gemini), "GRPC_ENDPOINT": tap.endpoint},
    )
    try:
        cluster.start()
        spy = Spy(cluster)
        try:
            yield Stack(worker_kind, cluster, logs, spy, fake_gemini, tap)
        finally:
            spy.close()
    finally:
        cluster.stop()
        tap.close()
        dump = tmp_path_factory.mktemp(f"stack-{worker_kind.language}") / "cluster.log"
        dump.write_text("".join(f"{name} | {line}\n" for name, line in logs.all()))


@pytest.fixture
def stack(shared_stack: Stack) -> Iterator[Stack]:
    """The shared system, with no worker alive from an earlier test and no tap fault; the workers this
    test started are stopped at its end."""
    cluster = shared_stack.cluster
    wait_until(lambda: shared_stack.live_workers() == 0, "no worker of an earlier test is alive", 15)
    drain_leftovers(shared_stack)
    assert shared_stack.tap is not None
    shared_stack.tap.clear()
    known = set(cluster.processes)
    yield shared_stack
    for name, proc in cluster.processes.items():
        if name not in known and name.startswith("worker-") and proc.alive:
            with contextlib.suppress(Exception):
                cluster.stop_worker(name)
    shared_stack.tap.clear()


def drain_leftovers(stack: Stack) -> None:
    """Questions an earlier (failed) test left unanswered would go to this test's workers: a reference
    (Python) worker answers them first."""

    def open_tasks() -> int:
        status = stack.cluster.status()
        return int(status["queue_length"]) + int(status["in_flight"])

    if open_tasks() == 0:
        return
    drain = start_worker(stack.cluster, "python")
    try:
        wait_until(lambda: open_tasks() == 0, "an earlier test's questions are answered", 60)
    finally:
        stack.cluster.stop_worker(drain.worker_id)
    wait_until(lambda: stack.live_workers() == 0, "the draining worker is gone", 15)


FreshStack = Callable[..., Stack]


@pytest.fixture
def fresh_stack(
    worker_kind: WorkerKind, fake_gemini: FakeGeminiThread, cluster_factory: ClusterFactory
) -> Iterator[FreshStack]:
    """A new system of its own for a case that breaks something (keyword arguments go to LocalCluster)."""
    spies: list[Spy] = []

    def make(**options: Any) -> Stack:
        logs = Logs()
        extra = {**suite_env(fake_gemini), **options.pop("extra_env", {})}
        cluster = cluster_factory(
            workers=0,
            work_seconds=WORK_SECONDS,
            model_mode="auto",
            restart=False,
            log_sink=logs,
            extra_env=extra,
            **options,
        )
        spy = Spy(cluster)
        spies.append(spy)
        return Stack(worker_kind, cluster, logs, spy, fake_gemini)

    yield make
    for spy in spies:
        spy.close()


def worker_env(stack: Stack, worker: Worker | None = None, **overrides: str) -> dict[str, str]:
    """The environment a worker of `stack` runs with (that of `worker`, or of a new id), plus overrides."""
    worker_id = worker.worker_id if worker is not None else stack.kind.new_id()
    health = worker.health_file if worker is not None else None
    return {**stack.cluster.config.worker_env(worker_id, os.environ, health_file=health), **overrides}


def elapsed_since(start: float) -> float:
    """Seconds since `start` (time.monotonic())."""
    return time.monotonic() - start
