"""The master's event stream (MasterEvents.Watch) tells the life of every task and worker, timings only."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

import grpc

from lab.loadgen.client import ChatClient
from services.protocol.rpc import pb, pb_grpc
from tests.conftest import ClusterFactory
from tests.waiting import eventually


class Watcher:
    """Reads Watch in a thread until `stop()`."""

    def __init__(self, endpoint: str) -> None:
        self.events: list[pb.Event] = []
        self._channel = grpc.insecure_channel(endpoint)
        stub = pb_grpc.MasterEventsStub(self._channel)  # type: ignore[no-untyped-call]
        self._call = stub.Watch(pb.WatchRequest(snapshot=True), timeout=60)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._call:
                self.events.append(event)
        except grpc.RpcError:
            pass  # cancelled by stop()

    def stop(self) -> None:
        self._call.cancel()
        self._thread.join(5)
        self._channel.close()


async def test_watch_streams_each_task_from_acceptance_to_delivery(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.3)
    watcher = Watcher(cluster.grpc_endpoint)
    try:
        await asyncio.sleep(0.5)  # on purpose: the stream is open before the first question (no event says so)
        async with ChatClient(cluster.web_url) as user:
            asked = [await user.ask(f"watch me {i}") for i in range(3)]
            await user.wait_answers(3, timeout=20)
            await eventually(
                lambda: sum(e.kind == "task.delivered" for e in watcher.events) >= 3,
                "three deliveries watched",
                timeout=5,
            )
    finally:
        watcher.stop()
    snapshot = [e for e in watcher.events[:2]]
    assert sorted(e.worker_id for e in snapshot) == sorted(cluster.worker_ids)
    assert {e.kind for e in snapshot} == {"worker.idle"}
    lives: dict[str, list[pb.Event]] = defaultdict(list)
    for event in watcher.events:
        if event.task_id and event.kind.startswith("task."):
            lives[event.task_id].append(event)
    for exchange in asked:
        kinds = [e.kind for e in lives[exchange.task_id]]
        assert kinds == ["task.accepted", "task.assigned", "task.answered", "task.delivered"], kinds
        stamps = [e.timestamp for e in lives[exchange.task_id]]
        assert stamps == sorted(stamps)
        answered = lives[exchange.task_id][2]
        assert answered.processing_time_ms >= 300 and answered.worker_id in cluster.worker_ids
        assert answered.query_timestamp <= answered.started_timestamp <= answered.completion_timestamp
    # Workers report busy and idle around each task; nothing in the stream carries the question.
    assert any(e.kind == "worker.busy" for e in watcher.events)
    assert not [e for e in watcher.events if "watch me" in str(e)]
