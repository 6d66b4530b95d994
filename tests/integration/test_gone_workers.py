"""Workers that are gone leave the picture: the status lists a dead worker as offline for a short grace
period (FORGET_WORKERS_AFTER_SECONDS), then not at all, and a worker that comes back is listed again."""

from __future__ import annotations

import signal

from tests.conftest import ClusterFactory
from tests.waiting import eventually


async def test_a_killed_worker_is_listed_offline_then_forgotten(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, restart=False, extra_env={"FORGET_WORKERS_AFTER_SECONDS": "2"})
    victim, survivor = cluster.worker_ids
    cluster.kill_worker(victim, signal.SIGKILL)  # its Last Will says offline

    def states() -> dict[str, str]:
        return {w.worker_id: w.state for w in cluster.status_report().workers}

    await eventually(lambda: states().get(victim) == "offline", "the killed worker listed offline")
    report = cluster.status_report()
    assert (report.idle, report.offline) == (1, 1)
    await eventually(lambda: victim not in states(), "the killed worker forgotten", timeout=10)
    report = cluster.status_report()
    assert states() == {survivor: "idle"} and (report.idle, report.busy, report.offline) == (1, 0, 0)
    newcomer = cluster.add_worker()
    assert set(states()) == {survivor, newcomer}
