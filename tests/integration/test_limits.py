"""Per-session limits and oversized input: a clear error, and nothing else changes."""

from __future__ import annotations

import grpc
import pytest
import socketio

from lab.loadgen.client import ChatClient
from tests.conftest import ClusterFactory
from tests.peers import send_result


async def test_questions_over_the_rate_limit_get_a_clear_error(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.0, extra_env={"RATE_PER_MINUTE": "3"})
    async with ChatClient(cluster.web_url) as user, ChatClient(cluster.web_url) as other:
        accepted = [await user.ask(f"q{i}") for i in range(3)]
        refused = await user.ask("one too many")
        assert all(e.task_id for e in accepted)
        assert "too many questions: at most 3 per minute" in (refused.ack.error or "")
        assert (await other.ask("another session is not limited")).task_id


async def test_questions_over_the_in_flight_limit_get_a_clear_error(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=2.0, extra_env={"MAX_IN_FLIGHT_PER_SESSION": "2"})
    async with ChatClient(cluster.web_url) as user:
        first, second = await user.ask("one"), await user.ask("two")
        third = await user.ask("three")
        assert first.task_id and second.task_id
        assert "too many questions in flight: at most 2" in (third.ack.error or "")
        await user.wait_answers(1, timeout=20)
        assert (await user.ask("room again")).task_id


def test_an_oversized_result_is_refused_by_grpc_and_the_master_keeps_serving(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.0)
    with pytest.raises(grpc.RpcError) as info:
        send_result(cluster.grpc_endpoint, worker_id="x", task_id="y", ai_response="A" * (2 << 20))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    ack = send_result(cluster.grpc_endpoint, worker_id="x", task_id="y", token="z", attempt=1)
    assert not ack.success and "unknown task" in ack.message


async def test_pages_from_other_origins_may_connect_only_when_allowed(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.0, extra_env={"CORS_ORIGINS": "http://lab.example"})

    async def connects(origin: str) -> bool:
        sio = socketio.AsyncClient(reconnection=False)
        try:
            await sio.connect(cluster.web_url, headers={"Origin": origin}, transports=["websocket"], wait_timeout=5)
        except socketio.exceptions.ConnectionError:
            return False
        await sio.disconnect()
        return True

    assert await connects("http://lab.example")
    assert not await connects("http://evil.example")
    assert await connects(cluster.web_url)  # the page's own origin
