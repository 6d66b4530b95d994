"""The master's API for the autoscaler, on a real system (Mosquitto, master and Python workers as processes), with
the web front (WEB_PROCESS=true, the default) and without: a decision reaches the master's log, the log topic,
the Watch stream and /metrics; a retired worker is given no more tasks, finishing the one it has."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.loadgen.client import ChatClient
from lab.observe.collect import Collector
from lab.system.local import LocalCluster
from services.master.settings import MasterSettings
from tests.conftest import ClusterFactory
from tests.waiting import eventually

pytestmark = pytest.mark.integration

MODES = {"web front": MasterSettings.env_of(web_process=True), "one process": MasterSettings.env_of(web_process=False)}
DECISION: dict[str, Any] = {
    "timestamp": 1_700_000_000_000,
    "current": 1,
    "target": 3,
    "direction": "up",
    "reason": "4 questions wait: the predicted wait breaks the 15 s target",
    "queue_length": 4,
    "busy": 1,
    "idle": 0,
    "arrival_rate_per_s": 0.5,
    "service_time_s": 10.0,
    "utilization": 0.76,
    "predicted_wait_s": 3.2,
}
LINE = f"autoscaler: 1 -> 3 workers (up): {DECISION['reason']}"


def operator(cluster: LocalCluster) -> httpx.AsyncClient:
    token = cluster.operator_token
    assert token
    return httpx.AsyncClient(base_url=cluster.web_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.mark.parametrize("mode", MODES)
async def test_a_decision_reaches_the_log_the_log_topic_the_watch_stream_and_the_metrics(
    cluster_factory: ClusterFactory, mode: str, tmp_path: Path
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.1, extra_env=MODES[mode])
    with Collector.for_cluster(cluster) as collector:
        await eventually(lambda: collector.watch.events, "the worker's snapshot on the Watch stream")
        async with operator(cluster) as http:
            refused = await http.post("/api/scaling", json=DECISION, headers={"Authorization": ""})
            bad = await http.post("/api/scaling", json=dict(DECISION, direction="down"))
            got = await http.post("/api/scaling", json=DECISION)
            assert got.status_code == 200 and got.json() == {"accepted": True}
            assert refused.status_code == 401 and bad.status_code == 400
            assert "does not match 1 -> 3" in bad.json()["detail"]
            metrics = (await http.get("/metrics")).text

        def decisions() -> list[dict[str, Any]]:
            return [e for e in collector.watch.events if e.get("kind") == "scale.decision"]

        def lines() -> list[str]:
            assert collector.tap is not None
            logs = [m for m in collector.tap.messages if m["topic"] == collector.tap.topics.logs]
            return [m["message"] for m in logs if m.get("source") == "master" and m["message"].startswith("autoscaler")]

        await eventually(decisions, "the decision on the Watch stream")
        await eventually(lines, "the decision on the log topic")
    (event,) = decisions()  # the bad one and the refused one are nowhere
    assert (event["target_workers"], event["current_workers"], event["reason"]) == (3, 1, DECISION["reason"])
    assert (event["queue_length"], event["busy_workers"]) == (4, 1)
    assert lines() == [LINE]
    assert "autoscaler_target_workers 3.0" in metrics and "autoscaler_current_workers 1.0" in metrics
    assert 'autoscaler_decisions_total{direction="up"} 1.0' in metrics
    log = (tmp_path / "cluster.log").read_text()
    assert LINE in log  # the master's own log
    assert cluster.operator_token and cluster.operator_token not in log


@pytest.mark.parametrize("mode", MODES)
async def test_retired_workers_finish_what_they_hold_and_get_nothing_more(
    cluster_factory: ClusterFactory, mode: str
) -> None:
    cluster = cluster_factory(workers=3, work_seconds=1.0, extra_env=MODES[mode])
    async with ChatClient(cluster.web_url) as user, operator(cluster) as http:
        first = await user.ask("held while its worker is retired")
        await eventually(lambda: first.worker_id, "the first question assigned")
        busy = first.worker_id
        retired_busy = await http.post(f"/api/workers/{busy}/retire")
        idle = next(w for w in cluster.worker_ids if w != busy)
        retired_idle = await http.post(f"/api/workers/{idle}/retire")
        unknown = await http.post("/api/workers/python-worker-nobody/retire")
        assert retired_busy.status_code == 200 and retired_busy.json() == {"retired": True, "idle": False}
        assert retired_idle.status_code == 200 and retired_idle.json() == {"retired": True, "idle": True}
        assert unknown.status_code == 404
        asked = [await user.ask(f"after the retirements {i}") for i in range(5)]
        await user.wait_answers(6, timeout=30)
        await asyncio.sleep(0.5)  # room for a duplicate to arrive
        status = (await http.get("/api/status")).json()
    (other,) = set(cluster.worker_ids) - {busy, idle}
    assert [a.workerId for a in first.answers] == [busy]  # finished, once
    assert all([a.workerId for a in e.answers] == [other] for e in asked), [e.answers for e in asked]
    workers = {w["worker_id"]: w for w in status["workers"]}
    assert workers[busy]["retired"] is True and workers[idle]["retired"] is True
    assert "retired" not in workers[other]  # the baseline's shape for a worker not retired
    assert (workers[busy]["tasks_done"], workers[idle]["tasks_done"], workers[other]["tasks_done"]) == (1, 0, 5)
    assert workers[idle]["state"] == "idle" and workers[busy]["state"] == "idle"  # listed, not offline
