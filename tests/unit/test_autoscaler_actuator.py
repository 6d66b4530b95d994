"""The local actuator with real child processes (a small stand-in for a worker that records its id and waits for
SIGTERM) and a scripted master: what it starts, which workers a scale-down takes, and that it stops only those
the master says are idle."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest

from services.autoscaler.actuators import LocalActuator, local_actuator, worker_command
from services.autoscaler.settings import AutoscalerSettings
from tests.waiting import eventually

# Records its WORKER_ID (with its HEALTH_FILE, the operator token if it got one, and its pid) and runs until
# SIGTERM.
STAND_IN = """
import os, pathlib, signal, sys, time
record = pathlib.Path(sys.argv[1]) / os.environ["WORKER_ID"]
handler = signal.SIG_IGN if os.environ.get("IGNORE_SIGTERM") else (lambda *_: sys.exit(0))
signal.signal(signal.SIGTERM, handler)
fields = [os.environ.get("HEALTH_FILE", ""), os.environ.get("OPERATOR_TOKEN", ""), str(os.getpid())]
record.write_text("|".join(fields))
while True:
    time.sleep(0.05)
"""


class ScriptedMaster:
    """The retire endpoint: answers `idle[worker]` (True when not scripted) and records every call."""

    def __init__(self) -> None:
        self.idle: dict[str, bool | None] = {}
        self.retired: list[str] = []

    async def retire(self, worker_id: str) -> bool | None:
        self.retired.append(worker_id)
        return self.idle.get(worker_id, True)


def actuator(tmp_path: Path, master: ScriptedMaster, **env: str) -> LocalActuator:
    base = {"PATH": os.environ["PATH"], "HEALTH_FILE": str(tmp_path / "state" / "any.health"), **env}
    return LocalActuator([sys.executable, "-c", STAND_IN, str(tmp_path)], base, master, grace_s=1.0)


def record(tmp_path: Path, worker_id: str) -> list[str]:
    """What a stand-in recorded: its HEALTH_FILE, OPERATOR_TOKEN and pid."""
    return (tmp_path / worker_id).read_text().split("|")


def started(tmp_path: Path) -> set[str]:
    return {p.name for p in tmp_path.iterdir() if p.is_file()}


async def up(act: LocalActuator, tmp_path: Path, target: int) -> list[str]:
    await act.scale_to(target, [])
    await eventually(lambda: len(started(tmp_path)) >= target, f"{target} workers started", timeout=20)
    return act.worker_ids


async def test_workers_start_with_ids_and_heartbeat_files_of_their_own(tmp_path: Path) -> None:
    act = actuator(tmp_path, ScriptedMaster())
    try:
        ids = await up(act, tmp_path, 3)
        assert await act.current() == 3
        assert len(set(ids)) == 3 and all(i.startswith("python-worker-auto") for i in ids)
        for worker_id in ids:
            health, _, _ = record(tmp_path, worker_id)
            assert health == str(tmp_path / "state" / f"{worker_id}.health")
    finally:
        await act.close()
    assert act.worker_ids == [] and await act.current() == 0


async def test_a_scale_down_stops_only_idle_workers_the_master_retired(tmp_path: Path) -> None:
    master = ScriptedMaster()
    act = actuator(tmp_path, master)
    try:
        first, second, third = await up(act, tmp_path, 3)
        await act.scale_to(1, [first, second])  # the third is busy: never taken
        assert third not in master.retired
        assert master.retired == [second, first]  # the newest idle ones first
        await eventually(lambda: act.worker_ids == [third], "the two idle workers stopped")
        assert await act.current() == 1
    finally:
        await act.close()


async def test_a_worker_that_took_a_task_before_its_retirement_is_stopped_once_idle(tmp_path: Path) -> None:
    master = ScriptedMaster()
    act = actuator(tmp_path, master)
    try:
        first, second = await up(act, tmp_path, 2)
        master.idle[second] = False  # assigned a task just before the retirement
        await act.scale_to(1, [first, second])
        assert master.retired == [second]
        assert await act.current() == 1  # on its way out, no longer counted
        await asyncio.sleep(0.3)  # on purpose: it must still run (its task is not done)
        assert second in act.worker_ids
        master.idle[second] = True
        await act.scale_to(1, [first])  # still busy: left alone
        assert master.retired == [second]
        await act.scale_to(1, [first, second])  # idle now: retired again, and stopped
        await eventually(lambda: act.worker_ids == [first], "the retired worker stopped once idle")
    finally:
        await act.close()


async def test_a_worker_the_master_does_not_know_is_not_stopped(tmp_path: Path) -> None:
    master = ScriptedMaster()
    act = actuator(tmp_path, master)
    try:
        first, second = await up(act, tmp_path, 2)
        master.idle[second] = None  # not registered (yet)
        await act.scale_to(1, [first, second])
        assert master.retired == [second, first]  # so the next idle one goes instead
        await eventually(lambda: act.worker_ids == [second], "the known idle worker stopped")
    finally:
        await act.close()


async def test_a_worker_that_dies_is_no_longer_counted_and_is_replaced_on_the_next_scale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    act = actuator(tmp_path, ScriptedMaster())
    try:
        first, _ = await up(act, tmp_path, 2)
        os.kill(int(record(tmp_path, first)[2]), signal.SIGKILL)
        await eventually(lambda: first not in act.worker_ids, "the killed worker seen as gone")
        assert await act.current() == 1
        assert f"worker {first} exited unexpectedly" in caplog.text
        await act.scale_to(2, [])
        assert await act.current() == 2 and first not in act.worker_ids
    finally:
        await act.close()


async def test_close_kills_a_worker_that_ignores_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    act = actuator(tmp_path, ScriptedMaster(), IGNORE_SIGTERM="1")
    await up(act, tmp_path, 1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await act.close()
    assert 1.0 <= loop.time() - start < 10.0
    assert act.worker_ids == []


async def test_workers_do_not_inherit_the_operator_token(tmp_path: Path) -> None:
    command = shlex.join([sys.executable, "-c", STAND_IN, str(tmp_path)])
    settings = AutoscalerSettings.from_env({"OPERATOR_TOKEN": "tok", "WORKER_COMMAND": command})
    environ = {"PATH": os.environ["PATH"], "OPERATOR_TOKEN": "tok", "OPERATOR_TOKEN_FILE": "/run/secrets/t"}
    act = local_actuator(settings, ScriptedMaster(), environ)
    try:
        (worker_id,) = await up(act, tmp_path, 1)
        assert record(tmp_path, worker_id)[1] == ""
    finally:
        await act.close()


def test_the_worker_command_is_the_python_worker_unless_told() -> None:
    assert worker_command("python") == [sys.executable, "-m", "services.worker"]
    assert worker_command("python", f"{sys.executable} -m services.worker --flag")[-1] == "--flag"
    with pytest.raises(ValueError, match="WORKER_COMMAND"):
        worker_command("python", "/nonexistent/worker")
