"""Conformance cases 1-4 and 16: how a worker announces itself, reports its state around tasks, reports
each result, answers offline, and shrugs off messages that are not its tasks (one shared system)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from lab.loadgen.client import ChatClient
from services.worker.models import OfflineModel
from tests.conformance.asking import answer_of, ask
from tests.conformance.conftest import GEMINI_TIMEOUT_SECONDS, KEEPALIVE_SECONDS, WORK_SECONDS, Stack, worker_env
from tests.conformance.harness import OwnProcess
from tests.waiting import eventually, wait_until

WORK_MS = round(WORK_SECONDS * 1000)


def test_01_registration_says_who_the_worker_is(stack: Stack, tmp_path: Path) -> None:
    """Case 1: a worker started without WORKER_ID makes its own `<language>-worker-<6 hex>` id, registers
    within 10 s with its language, `idle`, a timestamp and `max_task_ms` = work + model timeout, and
    connects to the broker with that id as client id, a persistent session (`c0`) and MQTT_KEEPALIVE."""
    env = worker_env(stack, HEALTH_FILE=str(tmp_path / "worker.health"))
    del env["WORKER_ID"]
    before = {r["worker_id"] for r in stack.spy.registrations()}
    started = time.time()
    process = OwnProcess(stack.kind, env, tmp_path / "worker.out")
    try:

        def new_registrations() -> list[dict[str, object]]:
            return [r for r in stack.spy.registrations() if r["worker_id"] not in before]

        wait_until(new_registrations, f"a registration ({process.text()[-500:]})", 10)
        [register] = new_registrations()[:1]
        worker_id = str(register["worker_id"])
        assert re.fullmatch(rf"{stack.language}-worker-[0-9a-f]{{6}}", worker_id), register
        assert register["language"] == stack.language
        assert register["status"] == "idle"
        assert register["max_task_ms"] == round((WORK_SECONDS + GEMINI_TIMEOUT_SECONDS) * 1000)
        stamp = register["timestamp"]
        assert isinstance(stamp, int) and started * 1000 - 2000 <= stamp <= time.time() * 1000 + 2000, register
        connected = [line for line in stack.logs.of("mosquitto") if f" as {worker_id} (" in line]
        assert connected, "the broker never saw a client with the worker's id"
        assert f"(p2, c0, k{KEEPALIVE_SECONDS}, u'worker')" in connected[0], connected[0]
        wait_until(lambda: stack.live_workers() == 1, "the master lists the worker", 10)
    finally:
        assert process.stop() == 0, process.text()[-2000:]


async def test_02_busy_before_the_result_and_idle_after_the_ack(stack: Stack) -> None:
    """Case 2: for back-to-back tasks (the next one already queued), the worker says `busy` with the task id
    and attempt before its result reaches the master, and `idle` with them only after the master's ack:
    busy 1, idle 1, busy 2, idle 2, busy 3, idle 3."""
    worker = stack.worker()
    assert stack.tap is not None
    async with ChatClient(stack.cluster.web_url) as user:
        asked = [await ask(user, f"back to back {i}") for i in range(3)]
        for exchange in asked:
            assert (await answer_of(exchange)).workerId == worker.worker_id
    order = [t["task_id"] for t in stack.spy.tasks(worker.worker_id)]
    assert sorted(order) == sorted(e.task_id for e in asked)
    await eventually(
        lambda: any(
            s["status"] == "idle" and s.get("task_id") == order[-1] for s in stack.spy.statuses(worker.worker_id)
        ),
        "idle after the last task",
        10,
    )
    statuses = [s for s in stack.spy.statuses(worker.worker_id) if s["status"] in ("busy", "idle") and s.get("task_id")]
    assert [(s["status"], s["task_id"], s["attempt"]) for s in statuses] == [
        (status, task_id, 1) for task_id in order for status in ("busy", "idle")
    ]
    assert all(s.get("task_id") for s in stack.spy.statuses(worker.worker_id) if s["status"] == "busy")
    for task_id in order:
        [result] = stack.tap.results(task_id=task_id)
        busy = next(s for s in statuses if s["task_id"] == task_id and s["status"] == "busy")
        idle = next(s for s in statuses if s["task_id"] == task_id and s["status"] == "idle")
        assert busy["_at"] < result["at"], "busy came after the result"
        assert idle["_at"] > result["acked_at"], "idle came before the master's ack"


async def test_03_one_result_per_attempt_echoing_the_task(stack: Stack) -> None:
    """Case 3: each attempt gets exactly one TaskResult, which the master accepts: `api_key` empty; worker
    id, task id, attempt, token and session_id as in the task message; the question, the offline answer and
    model; and timings that add up (processing >= the simulated work, within start..completion)."""
    worker = stack.worker()
    assert stack.tap is not None
    async with ChatClient(stack.cluster.web_url) as user:
        asked = [await ask(user, "echo me, please"), await ask(user, "and me too")]
        for exchange in asked:
            answer = await answer_of(exchange)
            assert answer.response == OfflineModel.text_for(exchange.query) and answer.error == ""
    await eventually(
        lambda: (
            sum(s["status"] == "idle" and bool(s.get("task_id")) for s in stack.spy.statuses(worker.worker_id)) >= 2
        ),
        "idle after both tasks",
        10,
    )
    for exchange in asked:
        task = stack.spy.task(exchange.task_id)
        records = stack.tap.results(task_id=exchange.task_id)
        assert len(records) == 1, records
        record = records[0]
        assert record["fault"] is None and record["ack"]["success"], record
        result = record["result"]
        assert result["api_key"] == ""
        assert result["worker_id"] == worker.worker_id == task["worker_id"]
        assert result["task_id"] == task["task_id"] == task["session_id"] == result["session_id"]
        assert result["attempt"] == task["attempt"] == 1
        assert result["token"] == task["token"] and task["token"]
        assert result["original_query"] == task["query"] == exchange.query
        assert result["ai_response"] == OfflineModel.text_for(task["query"])
        assert result["error"] == "" and result["model"] == "offline"
        assert result["query_timestamp"] == task["timestamp"]
        started, completed = result["started_timestamp"], result["completion_timestamp"]
        assert task["timestamp"] - 1000 <= started <= completed <= record["at"] * 1000 + 1000, result
        assert WORK_MS <= result["processing_time_ms"] <= completed - started + 5, result
        assert 0 <= result["model_time_ms"] <= result["processing_time_ms"], result


# Inputs where a naive port goes wrong: Unicode whitespace (Python's str.split() also splits at \x1c-\x1f,
# NEL, NBSP, U+2028/9), long text, and the 200-character cut landing on or next to characters outside the
# BMP, a ZWJ sequence, a flag, combining marks and a space (cut, then right-stripped).
TRICKY_QUERIES = (
    "spaces   and\ttabs\t\tand\n\nnewlines\r\nand CRLF",
    "nbsp\u00a0em\u2003ideographic\u3000line\u2028para\u2029nel\x85end",
    "unit\x1fsep\x1crec\x1dgrp\x1efile\x0bvt\x0cff",
    "zero\u200bwidth is not a space",
    "long " * 400,
    "a" * 198 + "😀" + "tail",
    "a" * 199 + "😀b",
    "a" * 197 + "👩‍👩‍👧‍👦" + "z" * 10,
    "b" * 198 + "🇩🇪🇫🇷" + "x",
    "a" * 198 + " " + "b" * 10,
    "c" * 200,
    "d" * 201,
    "e\u0301" * 150,
    "What is MQTT? 🤖 Explain QoS 0/1/2 — briefly, s'il vous plaît: «ça», 日本語, Ελληνικά.",
)


async def test_04_offline_answers_are_byte_identical_to_pythons(stack: Stack) -> None:
    """Case 4: without a key (auto mode), the answer to every tricky question is byte for byte what the
    reference `OfflineModel.text_for` gives for the question the worker was sent, with model `offline`."""
    worker = stack.worker()
    asked, answers = [], []
    async with ChatClient(stack.cluster.web_url) as user:
        for first in range(0, len(TRICKY_QUERIES), 7):  # a session may have 10 questions in flight
            batch = [await ask(user, query) for query in TRICKY_QUERIES[first : first + 7]]
            answers += [await answer_of(exchange, 30) for exchange in batch]
            asked += batch
    mismatches = []
    for exchange, answer in zip(asked, answers, strict=True):
        sent = stack.spy.task(exchange.task_id)["query"]
        assert sent == exchange.query  # what the master passes on: the question exactly as asked
        assert answer.workerId == worker.worker_id and answer.model == "offline" and answer.error == ""
        if answer.response.encode() != OfflineModel.text_for(sent).encode():
            mismatches.append({"query": sent, "got": answer.response, "want": OfflineModel.text_for(sent)})
    assert not mismatches, json.dumps(mismatches, ensure_ascii=True, indent=1)


async def test_16_malformed_and_foreign_messages_are_ignored(stack: Stack) -> None:
    """Case 16: junk on the worker's task topic (not JSON, not UTF-8, not an object, missing or mistyped
    fields) and a well-formed task addressed to another worker start no work and send no result; the worker
    stays up and answers the next real question."""
    worker = stack.worker()
    assert stack.tap is not None
    topic = f"workers/{worker.worker_id}/tasks"
    foreign = {
        "worker_id": "python-worker-f0f0f0",
        "session_id": "foreign-task",
        "query": "not yours",
        "api_key": "",
        "grpc_endpoint": stack.tap.endpoint,
        "timestamp": int(time.time() * 1000),
        "task_id": "foreign-task",
        "attempt": 1,
        "token": "foreign-token",
    }
    junk = [
        b"",
        b"not json at all",
        b"\xff\xfe\x00 not utf-8",
        b"[]",
        b"null",
        b"42",
        b"{}",
        json.dumps({"worker_id": worker.worker_id}).encode(),
        json.dumps({**foreign, "worker_id": worker.worker_id, "query": ["a", "list"], "task_id": "mistyped"}).encode(),
        json.dumps(foreign).encode(),
    ]
    for payload in junk:
        stack.spy.publish(topic, payload)
    async with ChatClient(stack.cluster.web_url) as user:
        exchange = await ask(user, "a real question after the junk")
        answer = await answer_of(exchange)
    assert answer.workerId == worker.worker_id and answer.error == ""
    stack.spy.sync()
    assert worker.process.alive
    assert [r["result"]["task_id"] for r in stack.tap.results(worker.worker_id)] == [exchange.task_id]
    busy = [s.get("task_id") for s in stack.spy.statuses(worker.worker_id) if s["status"] == "busy"]
    assert busy == [exchange.task_id], busy
