"""Collectors see every task on gRPC and MQTT, and the two views of processing time agree."""

from __future__ import annotations

from lab.loadgen.client import ChatClient
from lab.observe.collect import Collector
from services.master.settings import MasterSettings
from tests.conftest import ClusterFactory
from tests.waiting import eventually


async def test_collector_gives_one_row_per_task_and_the_workers_busy_times(cluster_factory: ClusterFactory) -> None:
    # The workers' own view on MQTT (busy and idle) comes with the per-task messages, which the lab opts into.
    cluster = cluster_factory(workers=2, work_seconds=0.4, extra_env=MasterSettings.env_of(task_messages=True))
    with Collector.for_cluster(cluster) as collector:
        # The Watch stream opens with one event per known worker: then it is recording.
        await eventually(lambda: len(collector.watch.events) >= 2, "the workers' snapshot on the Watch stream")
        async with ChatClient(cluster.web_url) as user:
            asked = [await user.ask(f"collect me {i}") for i in range(4)]
            await user.wait_answers(4, timeout=20)
            await eventually(lambda: collector.tasks().delivered.notna().sum() == 4, "four deliveries seen")
            await eventually(lambda: len(collector.cross_check()) == 4, "every task's idle status on MQTT")
    tasks = collector.tasks().set_index("task_id")
    assert set(tasks.index) == {e.task_id for e in asked}
    assert (tasks.outcome == "answered").all() and (tasks.language == "python").all()
    for column in ("submitted", "assigned", "started", "finished", "delivered"):
        assert tasks[column].notna().all(), column
    ordered = tasks[["submitted", "assigned", "started", "finished", "delivered"]].astype("int64")
    assert (ordered.diff(axis=1).iloc[:, 1:] >= 0).all().all()  # each step at or after the previous
    assert (tasks.processing_time_ms >= 400).all()
    assert set(tasks.worker_id) == set(cluster.worker_ids)

    workers = collector.worker_events()
    assert {"idle", "busy"} <= set(workers.state)
    assert set(workers.source) == {"grpc", "mqtt"}

    check = collector.cross_check()
    assert len(check) == 4
    # Busy on MQTT lasts from before the work to after the master's ack: a little longer, never shorter.
    assert (check.difference_ms >= 0).all() and (check.difference_ms < 500).all(), check
