"""How the Python worker reads the master's presence: a new master → register again; epochs (PROTOCOL.md) →
a presence with a lower epoch than one already seen is ignored."""

from __future__ import annotations

import json
from typing import Any

import aiomqtt
import pytest

from services.worker.models import OfflineModel
from services.worker.runner import WorkerRunner
from services.worker.settings import WorkerSettings


class Presences:
    """A runner fed presences by hand; counts the registrations they cause (no broker)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runner = WorkerRunner(WorkerSettings(worker_id="python-worker-epochs"), OfflineModel(0.0, 0.0))
        self.registered = 0

        async def register(client: aiomqtt.Client) -> None:
            self.registered += 1

        monkeypatch.setattr(self.runner, "_register", register)
        monkeypatch.setattr(self.runner.mqtt, "client", object())  # connected, as far as the runner can tell

    async def see(self, status: str = "online", **fields: Any) -> int:
        """Deliver one presence; how many registrations it caused."""
        before = self.registered
        payload = json.dumps({"status": status, "grpc_endpoint": "master:50051", **fields}).encode()
        await self.runner._on_message(self.runner.topics.master_status, payload)
        return self.registered - before


@pytest.fixture
def presences(monkeypatch: pytest.MonkeyPatch) -> Presences:
    return Presences(monkeypatch)


async def test_a_new_master_without_epochs_is_registered_with_as_before(presences: Presences) -> None:
    assert await presences.see(timestamp=1) == 1
    assert await presences.see(timestamp=1) == 0  # the same master
    assert await presences.see("offline") == 0
    assert await presences.see(timestamp=2) == 1


async def test_a_presence_with_a_lower_epoch_is_ignored(presences: Presences) -> None:
    assert await presences.see(timestamp=1, epoch=7) == 1
    assert await presences.see(timestamp=2, epoch=5) == 0  # a deposed leader
    assert await presences.see(timestamp=3, epoch=7) == 1  # the same epoch, a new timestamp: as before
    assert await presences.see(timestamp=4, epoch=8) == 1
    assert await presences.see(timestamp=5, epoch=7) == 0


async def test_a_lower_epoch_changes_nothing_else(presences: Presences) -> None:
    assert await presences.see(timestamp=1, epoch=7) == 1
    assert await presences.see(timestamp=2, epoch=5, task_messages=False) == 0
    assert not presences.runner._lean  # not lean for a deposed leader
    assert await presences.see(timestamp=1, epoch=7) == 0  # still the leader it registered with
    assert await presences.see(timestamp=3, epoch=7, task_messages=False) == 1
    assert presences.runner._lean


async def test_a_deposed_leaders_will_does_not_lower_the_epoch(presences: Presences) -> None:
    assert await presences.see("offline", epoch=9) == 0
    assert await presences.see(timestamp=1, epoch=8) == 0  # older than the leader whose Will we saw
    assert await presences.see(timestamp=2, epoch=9) == 1
    assert await presences.see("offline", epoch=3) == 0
    assert await presences.see(timestamp=3, epoch=9) == 1


async def test_a_presence_without_an_epoch_after_epochs_is_read_as_before(presences: Presences) -> None:
    assert await presences.see(timestamp=1, epoch=7) == 1
    assert await presences.see(timestamp=2) == 1  # no epoch: no information, not a lower one
    assert await presences.see(timestamp=3, epoch=5) == 0  # the highest epoch seen is still 7
    assert await presences.see(timestamp=4, epoch=7) == 1
