"""The autoscaler's loop holds when the master does not answer: nothing is scaled on missing data, and the
outage is logged once."""

from __future__ import annotations

import logging

import pytest

from lab.system.ports import free_port
from services.autoscaler.__main__ import Loop
from services.autoscaler.client import MasterClient
from services.autoscaler.settings import AutoscalerSettings

TOKEN = "s3cret-operator-t0ken"


class RecordingActuator:
    """Counts what it is asked; runs nothing."""

    def __init__(self) -> None:
        self.workers = 2
        self.asked: list[int] = []

    async def current(self) -> int:
        return self.workers

    async def scale_to(self, target: int, idle_workers: list[str]) -> None:
        self.asked.append(target)

    async def close(self) -> None:
        pass


async def test_a_master_that_does_not_answer_changes_nothing_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = AutoscalerSettings.from_env({"OPERATOR_TOKEN": TOKEN, "MASTER_URL": url, "AUTOSCALE_MIN": "0"})
    master = MasterClient(url, TOKEN, timeout_s=1.0)
    actuator = RecordingActuator()
    loop = Loop(settings, master, actuator)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                await loop.round()
    finally:
        await master.aclose()
    assert actuator.asked == []  # not even towards the minimum: nothing is known
    holds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("holding:")]
    assert len(holds) == 1 and "the master does not answer as expected (GET /api/status: ConnectError" in holds[0]
    assert TOKEN not in caplog.text
