"""Results are accepted only for the task's current attempt with its token; baseline workers are opt-in."""

from __future__ import annotations

import asyncio

from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from services.protocol import now_ms
from tests.conftest import ClusterFactory
from tests.peers import RawWorker, peer_for, send_result
from tests.waiting import eventually


async def wait_idle(cluster: LocalCluster, worker_id: str) -> None:
    def idle() -> bool:
        return any(w["worker_id"] == worker_id and w["state"] == "idle" for w in cluster.status()["workers"])

    await eventually(idle, f"{worker_id} is idle")


async def test_forged_and_stale_results_are_refused_and_the_real_one_lands(
    lone_raw_worker: tuple[LocalCluster, RawWorker],
) -> None:
    cluster, peer = lone_raw_worker
    await wait_idle(cluster, peer.worker_id)
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("who answers me?", api_key="user-key-123")
        task = await asyncio.to_thread(peer.next_task)
        assert task.task_id == asked.task_id and task.attempt == 1 and task.token
        assert task.api_key == "user-key-123"  # only the assigned worker gets the key
        assert task.session_id != user.session_id  # the session id is never published
        endpoint = task.grpc_endpoint
        base = dict(
            worker_id=peer.worker_id,
            session_id=task.session_id,
            original_query=task.query,
            ai_response="forged!",
            processing_time_ms=5,
            query_timestamp=task.timestamp,
            completion_timestamp=now_ms(),
            task_id=task.task_id,
            attempt=1,
        )
        cases = {
            "unknown task": dict(base, task_id="00000000-0000-0000-0000-000000000000", token=task.token),
            "invalid token": dict(base, token="guessed-token"),
            "not the current attempt": dict(base, attempt=2, token=task.token),
            "another worker": dict(base, worker_id="go-worker-thief", token=task.token),
            "must carry task_id": dict(base, task_id="", token=""),
        }
        for expected, fields in cases.items():
            ack = await asyncio.to_thread(send_result, endpoint, **fields)
            assert not ack.success and expected in ack.message, (expected, ack.message)
        assert not user.answered()
        ack = await asyncio.to_thread(
            send_result, endpoint, **dict(base, ai_response="the real answer", token=task.token)
        )
        assert ack.success, ack.message
        [answered] = await user.wait_answers(1, timeout=10)
        assert answered.answer and answered.answer.response == "the real answer"
        assert answered.answer.workerId == peer.worker_id
        again = await asyncio.to_thread(send_result, endpoint, **dict(base, token=task.token))
        assert not again.success  # exactly one answer per question
        await asyncio.sleep(0.3)  # on purpose: a second answer would arrive right after
        assert len(answered.answers) == 1


async def test_baseline_worker_results_are_matched_by_worker_when_allowed(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=0, extra_env={"ALLOW_BASELINE_WORKERS": "true"})
    peer = peer_for(cluster, "java-worker-legacy", language="java")
    try:
        peer.register()
        await wait_idle(cluster, peer.worker_id)
        async with ChatClient(cluster.web_url) as user:
            await user.ask("hello from the past")
            task = await asyncio.to_thread(peer.next_task)
            # A baseline worker echoes the baseline fields only: no task_id, attempt or token.
            ack = await asyncio.to_thread(
                send_result,
                task.grpc_endpoint,
                worker_id=peer.worker_id,
                session_id=task.session_id,
                original_query=task.query,
                ai_response="legacy answer",
                processing_time_ms=3,
                query_timestamp=task.timestamp,
                completion_timestamp=now_ms(),
            )
            assert ack.success, ack.message
            [answered] = await user.wait_answers(1, timeout=10)
            assert answered.answer and answered.answer.response == "legacy answer"
            # A second baseline result from the same worker has no task to match any more.
            late = await asyncio.to_thread(
                send_result, task.grpc_endpoint, worker_id=peer.worker_id, ai_response="again"
            )
            assert not late.success and "holds no task" in late.message
    finally:
        peer.close()


async def test_worker_going_offline_gives_its_task_to_another(lone_raw_worker: tuple[LocalCluster, RawWorker]) -> None:
    cluster, peer = lone_raw_worker
    await wait_idle(cluster, peer.worker_id)
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("survive me")
        first = await asyncio.to_thread(peer.next_task)
        rescuer = peer_for(cluster, "go-worker-rescuer")
        try:
            rescuer.register()
            peer.status("offline")  # what the Last Will says when a worker dies
            second = await asyncio.to_thread(rescuer.next_task)
            assert second.task_id == asked.task_id and second.attempt == 2 and second.token != first.token
            stale = await asyncio.to_thread(
                send_result,
                first.grpc_endpoint,
                worker_id=peer.worker_id,
                task_id=first.task_id,
                attempt=1,
                token=first.token,
                ai_response="late",
            )
            assert not stale.success
            ack = await asyncio.to_thread(
                send_result,
                second.grpc_endpoint,
                worker_id=rescuer.worker_id,
                task_id=second.task_id,
                attempt=2,
                token=second.token,
                ai_response="rescued",
            )
            assert ack.success
            [answered] = await user.wait_answers(1, timeout=10)
            assert answered.answer and answered.answer.response == "rescued"
        finally:
            rescuer.close()


async def test_task_whose_lease_runs_out_goes_to_another_worker(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=0, extra_env={"LEASE_SECONDS": "1.5"})
    sloth, helper = peer_for(cluster, "go-worker-sloth"), peer_for(cluster, "go-worker-helper")
    try:
        sloth.register()
        await wait_idle(cluster, sloth.worker_id)
        async with ChatClient(cluster.web_url) as user:
            asked = await user.ask("who finishes?")
            first = await asyncio.to_thread(sloth.next_task)  # taken, then never answered
            helper.register()
            second = await asyncio.to_thread(helper.next_task, 10)  # the lease ran out
            assert second.task_id == first.task_id == asked.task_id and second.attempt == 2
            ack = await asyncio.to_thread(
                send_result,
                second.grpc_endpoint,
                worker_id=helper.worker_id,
                task_id=second.task_id,
                attempt=2,
                token=second.token,
                ai_response="done by the helper",
            )
            assert ack.success
            late = await asyncio.to_thread(
                send_result,
                first.grpc_endpoint,
                worker_id=sloth.worker_id,
                task_id=first.task_id,
                attempt=1,
                token=first.token,
                ai_response="too late",
            )
            assert not late.success
            [answered] = await user.wait_answers(1, timeout=10)
            assert answered.answer and answered.answer.response == "done by the helper"
        # The slow worker is lost: it gets nothing new until it says it is idle again, and is not counted busy.
        report = cluster.status_report()
        states = {w.worker_id: w.state for w in report.workers}
        assert states[sloth.worker_id] == "lost" and report.lost == 1
    finally:
        sloth.close()
        helper.close()


async def test_worker_idle_without_a_result_gets_its_task_requeued_at_once(
    lone_raw_worker: tuple[LocalCluster, RawWorker],
) -> None:
    cluster, peer = lone_raw_worker
    await wait_idle(cluster, peer.worker_id)
    async with ChatClient(cluster.web_url) as user:
        await user.ask("lost in the mail")
        first = await asyncio.to_thread(peer.next_task)
        peer.status("idle", task_id=first.task_id, attempt=first.attempt)  # done, but the result never arrived
        second = await asyncio.to_thread(peer.next_task, 5)
        assert second.task_id == first.task_id and second.attempt == 2 and second.token != first.token
