"""Tests of the services' event loop choice: uvloop by default where installed, asyncio's on request."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from services.loop import run, runner
from services.master.settings import MasterSettings
from services.worker.settings import WorkerSettings


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_auto_and_uvloop_run_on_uvloop() -> None:
    assert run(loop_module(), "auto") == "uvloop"
    assert run(loop_module(), "uvloop") == "uvloop"


def test_asyncio_runs_on_asyncios_own_loop() -> None:
    assert run(loop_module(), "asyncio") == "asyncio"


def test_the_lab_follows_event_loop_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_LOOP", "asyncio")
    assert run(loop_module()) == "asyncio"
    monkeypatch.delenv("EVENT_LOOP")
    assert run(loop_module()) == "uvloop"


def test_an_unknown_loop_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="EVENT_LOOP must be one of auto, uvloop, asyncio"):
        runner("tokio")


def test_uvloop_asked_for_but_missing_is_a_clear_error_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an interpreter without uvloop sees on import
    with pytest.raises(ValueError, match="uvloop is not installed"):
        runner("uvloop")
    assert runner("auto") is asyncio.run


@pytest.mark.parametrize("settings", [MasterSettings, WorkerSettings])
def test_event_loop_setting_takes_only_known_loops(settings: type[MasterSettings] | type[WorkerSettings]) -> None:
    assert settings.from_env({}).event_loop == "auto"
    assert settings.from_env({"EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ValueError, match="EVENT_LOOP"):
        settings.from_env({"EVENT_LOOP": "tokio"})


@pytest.mark.parametrize("service", ["services.master", "services.worker"])
def test_a_service_told_an_unknown_loop_exits_2_naming_it(service: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", service],
        env={"EVENT_LOOP": "tokio", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "EVENT_LOOP" in done.stderr
