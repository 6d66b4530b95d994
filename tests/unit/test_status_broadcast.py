"""The status every client is told (`system-status`): sent when it changed, and to many clients less often, so
that the frames of all clients together stay within STATUS_FRAMES_PER_S."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from services.master import loops
from services.protocol import Events, SystemStatus
from tests.unit.master_fakes import Rig, started

INTERVAL_S = 0.01  # the check's interval in these tests (1 s in the master)


class Audience:
    """A broadcast to `clients` clients that notes when each status went out (at once, at whatever rate it is
    asked to keep)."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.sent: list[tuple[float, SystemStatus]] = []
        self.rates: set[float] = set()

    async def __call__(self, event: str, status: SystemStatus, per_second: float) -> int:
        assert event == Events.STATUS
        self.sent.append((asyncio.get_running_loop().time(), status))
        self.rates.add(per_second)
        return self.clients


async def told(rig: Rig, audience: Audience, seconds: float, change: bool = True) -> list[float]:
    """Run tell_status for `seconds` while (with `change`) a worker registers every INTERVAL_S, so the status
    changes at every check; the gaps between the broadcasts."""
    task = asyncio.create_task(loops.tell_status(rig.master, audience))
    for i in range(round(seconds / INTERVAL_S)):
        if change:
            await rig.worker(f"go-worker-{i}")
        await asyncio.sleep(INTERVAL_S)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    times = [t for t, _ in audience.sent]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@pytest.fixture(autouse=True)
def fast_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loops, "STATUS_INTERVAL_S", INTERVAL_S)
    monkeypatch.setattr(loops, "STATUS_FRAMES_PER_S", 1000.0)


async def test_a_few_clients_are_told_each_change_at_the_next_check() -> None:
    audience = Audience(clients=5)  # 5 frames: far within 1,000 a second
    gaps = await told(await started(), audience, 0.3)
    assert len(audience.sent) >= 10
    assert max(gaps) < 0.08


async def test_many_clients_are_told_less_often_so_the_frames_stay_within_the_rate() -> None:
    audience = Audience(clients=100)  # 100 frames at 1,000 a second: one broadcast per 0.1 s at most
    gaps = await told(await started(), audience, 0.45)
    assert 2 <= len(audience.sent) <= 5
    assert min(gaps) >= 0.095
    # And each broadcast is itself spread out at that rate rather than sent to all at once.
    assert audience.rates == {1000.0}
    # What they are told is the latest status, not one left over from before the pause.
    assert audience.sent[-1][1].workers >= 20


async def test_an_unchanged_status_is_not_sent_again() -> None:
    audience = Audience(clients=5)
    await told(await started(), audience, 0.2, change=False)
    assert len(audience.sent) == 1
