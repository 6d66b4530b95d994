"""A worker's goodbye is its last word: no status it published before overtakes it (real Mosquitto)."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from services.protocol.messages import StatusMessage, TaskMessage, decode, encode, now_ms
from services.protocol.topics import Topics
from services.worker.models import OfflineModel
from services.worker.runner import WorkerRunner
from services.worker.settings import WorkerSettings
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.integration


async def _statuses_around_goodbye(
    host: str, port: int, worker: tuple[str, str], observer: tuple[str, str]
) -> list[str]:
    """Start a worker, give it a 3 s task, tell it to stop halfway; every status it sends until 2 s later."""
    settings = WorkerSettings(
        worker_id="python-worker-goodbye",
        mqtt_host=host,
        mqtt_port=port,
        mqtt_username=worker[0],
        mqtt_password=worker[1],
        work_seconds=3.0,
    )
    topics = Topics(settings.topic_prefix)
    seen: list[str] = []
    async with aiomqtt.Client(host, port, username=observer[0], password=observer[1]) as watcher:
        await watcher.subscribe(topics.status, qos=1)
        runner = WorkerRunner(settings, OfflineModel(0.0, 0.0))
        running = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.mqtt.connected.wait(), 10)
        task = TaskMessage(
            worker_id=settings.worker_id,
            session_id="t1",
            query="a question",
            grpc_endpoint="127.0.0.1:9",
            timestamp=now_ms(),
            task_id="t1",
            attempt=1,
            token="x",
        )
        await runner._on_message(topics.tasks(settings.worker_id), encode(task))
        await asyncio.sleep(1.0)  # busy with it now
        await runner.announce_offline()

        async def collect() -> None:
            async for message in watcher.messages:
                status = decode(StatusMessage, message.payload if isinstance(message.payload, bytes) else b"")
                if status.worker_id == settings.worker_id:
                    seen.append(status.status)

        # Whatever the worker still sends after its goodbye shows up within these 2 s (its task had 2 s left).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(collect(), 2.5)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    return seen


def test_the_last_status_goes_out_before_the_goodbye(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=0)
    credentials = cluster.credentials
    seen = asyncio.run(
        asyncio.wait_for(
            _statuses_around_goodbye(
                "127.0.0.1", cluster.mqtt_port, credentials.login("worker"), credentials.login("observer")
            ),
            20,
        )
    )
    # Stopped mid-task: "idle" (without a result: the master hands the task on at once), then the goodbye,
    # then nothing. Before, the unfinished task reported "idle" after "offline", which revived the worker.
    # (The worker says "busy" again when it registers with the cluster's master.)
    assert seen[-2:] == ["idle", "offline"], seen
    assert set(seen[:-2]) == {"busy"}, seen
