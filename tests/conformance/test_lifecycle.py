"""Conformance cases 8-10, 17 and 20: how a worker dies, stops, tells its health, and refuses bad settings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.loadgen.client import ChatClient
from lab.system.workers import WorkerKind
from services.health import Unhealthy, check_worker
from tests.conformance.asking import answer_of, ask
from tests.conformance.conftest import FreshStack, Stack, worker_env
from tests.conformance.harness import Worker, run_command
from tests.waiting import eventually, wait_until

LONG_TASK = {"WORK_SECONDS": "3"}  # long enough to be caught in the middle of it


def statuses_of(stack: Stack, worker: Worker) -> list[str]:
    """The worker's status words so far."""
    return [s["status"] for s in stack.spy.statuses(worker.worker_id)]


async def test_08_kill_9_fires_the_will_and_another_worker_answers(stack: Stack) -> None:
    """Case 8: a worker killed with SIGKILL in the middle of a task goes `offline` by its Last Will, and the
    task is answered by another worker."""
    doomed = stack.worker(LONG_TASK)
    async with ChatClient(stack.cluster.web_url) as user:
        exchange = await ask(user, "you will not finish this")
        await eventually(lambda: "busy" in statuses_of(stack, doomed), "the doomed worker is busy", 10)
        other = await asyncio_to_thread_worker(stack)
        stack.cluster.kill_worker(doomed.worker_id)
        killed = time.monotonic()
        await eventually(lambda: statuses_of(stack, doomed)[-1] == "offline", "the Last Will", 10)
        answer = await answer_of(exchange, 20)
    assert answer.workerId == other.worker_id and answer.error == ""
    assert time.monotonic() - killed < 12


async def asyncio_to_thread_worker(stack: Stack) -> Worker:
    """Start a second worker without blocking the event loop (a chat client is connected meanwhile)."""
    return await asyncio.to_thread(stack.worker)


def test_09_sigterm_when_idle_says_goodbye_and_exits_0(stack: Stack) -> None:
    """Case 9: SIGTERM to an idle worker: it publishes `offline`, removes its heartbeat file and exits 0
    within 5 s."""
    worker = stack.worker()
    wait_until(worker.health_file.exists, "the heartbeat file", 10)
    stack.cluster.signal_worker(worker.worker_id, signal.SIGTERM)
    sent = time.monotonic()
    wait_until(worker.process.has_exited, "the worker exits", 6)
    took = time.monotonic() - sent
    assert worker.process.returncode == 0, stack.worker_lines(worker)[-20:]
    assert took <= 5.0, f"took {took:.1f} s to stop"
    stack.spy.sync()
    assert statuses_of(stack, worker)[-1] == "offline"
    assert not worker.health_file.exists()


def published_by(stack: Stack, worker: Worker) -> list[tuple[str, dict[str, object]]]:
    """Everything the worker published (register, status, logs), in order."""
    mine = []
    for m in stack.spy.all():
        data = m.json()
        ours = isinstance(data, dict) and worker.worker_id in (data.get("worker_id"), data.get("source"))
        if ours and not m.topic.endswith("/tasks"):
            mine.append((m.topic.rsplit("/", 1)[-1], data))
    return mine


async def test_10_sigterm_mid_task_hands_the_task_on_at_once(stack: Stack) -> None:
    """Case 10: SIGTERM in the middle of a task: the goodbye is the worker's last message (nothing after
    `offline`), it exits 0, and the task is answered by another worker within seconds, not after the lease."""
    stopping = stack.worker(LONG_TASK)
    async with ChatClient(stack.cluster.web_url) as user:
        exchange = await ask(user, "interrupt me")
        await eventually(lambda: "busy" in statuses_of(stack, stopping), "the worker is busy", 10)
        other = await asyncio_to_thread_worker(stack)
        stack.cluster.signal_worker(stopping.worker_id, signal.SIGTERM)
        sent = time.monotonic()
        answer = await answer_of(exchange, 20)
        took = time.monotonic() - sent
        await eventually(stopping.process.has_exited, "the worker exits", 6)
    assert answer.workerId == other.worker_id and answer.error == "", answer
    assert took < 5.0, f"answered {took:.1f} s after the SIGTERM"
    assert stopping.process.returncode == 0
    stack.spy.sync()
    mine = published_by(stack, stopping)
    assert mine[-1][0] == "status" and mine[-1][1]["status"] == "offline", mine[-3:]


def test_17_check_tells_connected_from_not(fresh_stack: FreshStack) -> None:
    """Case 17: `--check` exits 0 while the worker is connected and 1 within ~3 s after the broker stops;
    the heartbeat file is what `services.health.check_worker` accepts, then rejects."""
    stack = fresh_stack()
    worker = stack.worker()
    env = worker_env(stack, worker)
    check_until(stack.kind, env, 0, 10)
    assert "connected" in check_worker(str(worker.health_file)).lower()
    stack.cluster.kill_broker(signal.SIGTERM)
    stopped = time.monotonic()
    started_last = check_until(stack.kind, env, 1, 10)
    assert started_last - stopped <= 3.0, f"--check still passed {started_last - stopped:.1f} s after the stop"
    with pytest.raises(Unhealthy):
        check_worker(str(worker.health_file))


def check_until(kind: WorkerKind, env: dict[str, str], code: int, timeout: float) -> float:
    """Run `--check` until it exits `code`; when the successful run started (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.monotonic()
        done = run_command(kind, env, "--check", timeout=15)
        if done.returncode == code:
            return started
        if time.monotonic() > deadline:
            raise AssertionError(f"--check never exited {code} within {timeout} s; last: {done}")
        time.sleep(0.1)


BAD_SETTINGS = {
    "WORK_SECONDS": "ten",
    "MODEL_MODE": "nope",
    "MQTT_PORT": "x",
    "MQTT_KEEPALIVE": "soon",
    "WORKER_ID": "has/slash",
    "GEMINI_TIMEOUT_SECONDS": "0",
    "RESULT_STREAM": "maybe",
    "MQTT_BROKER": "http://x",  # the original system's variable, checked even when MQTT_HOST and MQTT_PORT win
}


@pytest.mark.parametrize("name", BAD_SETTINGS)
def test_20_a_bad_setting_exits_2_with_one_line_naming_it(
    worker_kind: WorkerKind, clean_environ: None, name: str, tmp_path: Path
) -> None:
    """Case 20: a worker given a bad value exits with code 2 at once, printing exactly one line that names
    the setting (and never connects anywhere: the broker's port here is closed)."""
    env = {
        **os.environ,
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": "1",
        "HEALTH_FILE": str(tmp_path / "h"),
        name: BAD_SETTINGS[name],
    }
    try:
        done = run_command(worker_kind, env, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker ran on with {name}={BAD_SETTINGS[name]}")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, done
    assert len(lines) == 1 and name in lines[0], lines
