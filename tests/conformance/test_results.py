"""Conformance cases 13 and 14: how a worker delivers results over gRPC when the master's end misbehaves
(the gRPC tap in front of the real master injects the faults; one shared system)."""

from __future__ import annotations

import time

from lab.loadgen.client import ChatClient, Exchange
from tests.conformance.asking import answer_of, ask
from tests.conformance.conftest import Stack
from tests.conformance.harness import TapProcess, Worker
from tests.waiting import eventually


def tap_of(stack: Stack) -> TapProcess:
    """The shared system's tap."""
    assert stack.tap is not None
    return stack.tap


async def finished(stack: Stack, worker: Worker, exchange: Exchange, attempt: int = 1) -> None:
    """Wait until the worker reported idle for this task attempt (it is done with it)."""
    await eventually(
        lambda: any(
            s["status"] == "idle" and s.get("task_id") == exchange.task_id and s.get("attempt") == attempt
            for s in stack.spy.statuses(worker.worker_id)
        ),
        f"idle after attempt {attempt}",
        15,
    )


async def test_13a_results_go_over_one_reused_stream(stack: Stack) -> None:
    """Case 13: against a master that offers StreamResults, results go over one long-lived stream (the
    first may go by SendResult while the stream opens), each accepted once."""
    tap = tap_of(stack)
    worker = stack.worker()
    async with ChatClient(stack.cluster.web_url) as user:
        for i in range(4):
            exchange = await ask(user, f"streamed {i}")
            assert (await answer_of(exchange)).workerId == worker.worker_id
            await finished(stack, worker, exchange)
    records = tap.results(worker.worker_id)
    assert len(records) == 4 and all(r["ack"]["success"] for r in records), records
    assert [r["rpc"] for r in records[-2:]] == ["stream", "stream"], [r["rpc"] for r in records]
    assert len({r["call"] for r in records if r["rpc"] == "stream"}) == 1, "a new stream per result"


async def test_13b_unimplemented_stream_falls_back_to_send_result_for_good(stack: Stack) -> None:
    """Case 13: against a master without StreamResults (UNIMPLEMENTED, as the original), every result
    arrives by SendResult, and the worker does not try the stream again."""
    tap = tap_of(stack)
    tap.set(stream_unimplemented=True)
    since = time.time()
    worker = stack.worker()
    async with ChatClient(stack.cluster.web_url) as user:
        for i in range(3):
            exchange = await ask(user, f"baseline master {i}")
            assert (await answer_of(exchange)).workerId == worker.worker_id
            await finished(stack, worker, exchange)
    records = tap.results(worker.worker_id)
    assert [(r["rpc"], r["ack"]["success"]) for r in records] == [("unary", True)] * 3, records
    tried = tap.streams(since)
    assert len(tried) == 1 and tried[0]["unimplemented"], f"StreamResults tried {len(tried)} times: {tried}"


async def test_13c_a_lost_ack_is_resent_and_the_task_answered_once(stack: Stack) -> None:
    """Case 13: when the master took a result but its ack was lost, the worker sends the result again (the
    master refuses the copy) and the user gets exactly one answer."""
    tap = tap_of(stack)
    worker = stack.worker()
    tap.set(drop_ack=1)
    async with ChatClient(stack.cluster.web_url) as user:
        exchange = await ask(user, "my ack gets lost")
        assert (await answer_of(exchange)).workerId == worker.worker_id
        await finished(stack, worker, exchange)
        stack.spy.sync()
        assert len(exchange.answers) == 1
    records = tap.results(task_id=exchange.task_id)
    assert len(records) == 2 and records[0].get("dropped") and records[0]["ack"]["success"], records
    assert not records[1]["ack"]["success"], "the master took the same answer twice"
    assert records[0]["result"]["token"] == records[1]["result"]["token"]
    assert records[0]["result"]["attempt"] == records[1]["result"]["attempt"] == 1


async def test_13d_unavailable_is_retried(stack: Stack) -> None:
    """Case 13: a master that answers UNAVAILABLE twice (restarting, overloaded) gets the result on the
    third try; the user gets one answer."""
    tap = tap_of(stack)
    worker = stack.worker()
    tap.set(unavailable=2)
    async with ChatClient(stack.cluster.web_url) as user:
        exchange = await ask(user, "try again")
        assert (await answer_of(exchange)).workerId == worker.worker_id
        await finished(stack, worker, exchange)
        assert len(exchange.answers) == 1
    records = tap.results(task_id=exchange.task_id)
    assert [r["fault"] for r in records] == ["unavailable", "unavailable", None], records
    assert records[-1]["ack"]["success"]


async def test_14_a_refused_result_leaves_the_worker_idle_and_working(stack: Stack) -> None:
    """Case 14: a result the master refuses is not sent again; the worker reports idle for that attempt
    (so the master hands the task out again at once), answers its next attempt and the next question."""
    tap = tap_of(stack)
    worker = stack.worker()
    tap.set(refuse=1)
    async with ChatClient(stack.cluster.web_url) as user:
        exchange = await ask(user, "refuse my first answer")
        started = time.monotonic()
        answer = await answer_of(exchange)
        assert time.monotonic() - started < 10, "the task waited out its lease"
        assert answer.workerId == worker.worker_id and answer.error == ""
        await finished(stack, worker, exchange, attempt=2)
        after = await answer_of(await ask(user, "and the next one"))
    assert after.workerId == worker.worker_id and after.error == ""
    records = tap.results(task_id=exchange.task_id)
    assert [(r["result"]["attempt"], r["ack"]["success"]) for r in records] == [(1, False), (2, True)], records
    statuses = [
        (s["status"], s.get("attempt"))
        for s in stack.spy.statuses(worker.worker_id)
        if s.get("task_id") == exchange.task_id
    ]
    assert statuses == [("busy", 1), ("idle", 1), ("busy", 2), ("idle", 2)], statuses
    assert worker.process.alive
