"""Conformance cases 11, 12, 15, 18, 19, 21 and 22: a worker in a system whose broker or master restarts (or
whose deposed leader still speaks), behind a strict ACL with another topic prefix, over TLS, and with secrets it
must keep to itself."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lab.loadgen.client import ChatClient
from lab.system.broker import CONFIG_NAME, BrokerTls
from services.protocol import now_ms
from tests.conformance.asking import answer_of, ask
from tests.conformance.conftest import FreshStack, Stack
from tests.conformance.harness import Worker
from tests.tls import make_tls
from tests.waiting import eventually, wait_until

REREGISTER_S = 3.0  # a worker registers again this soon after it sees a new master
OURS = ("python", "go", "java")  # workers that know `task_messages` (a worker of another language may not)


def registered_since(stack: Stack, worker: Worker, since: float) -> list[float]:
    """When the spy got the worker's registrations that arrived after `since` (time.time())."""
    return [r["_at"] for r in stack.spy.registrations(worker.worker_id) if r["_at"] > since]


async def test_11_broker_restart_the_worker_comes_back_and_takes_the_queued_task(fresh_stack: FreshStack) -> None:
    """Case 11: the broker stops, a question arrives meanwhile; once the broker is back the worker
    registers again on its own and answers that question."""
    stack = fresh_stack()
    worker = stack.worker()
    async with ChatClient(stack.cluster.web_url) as user:
        stack.cluster.kill_broker(signal.SIGTERM)
        await eventually(lambda: not stack.cluster.status()["mqtt_connected"], "the master lost the broker", 10)
        exchange = await ask(user, "asked while the broker was down")
        restarted = time.time()
        await asyncio.to_thread(stack.cluster.restart_broker)
        await eventually(lambda: registered_since(stack, worker, restarted), "the worker registers again", 15)
        answer = await answer_of(exchange, 20)
    assert answer.workerId == worker.worker_id and answer.error == ""
    assert worker.process.alive


def master_online_since(stack: Stack, since: float) -> float | None:
    """When the spy got the master's first `online` presence after `since`, if it did."""
    for m in stack.spy.on("master/status"):
        data = m.json()
        if m.at > since and isinstance(data, dict) and data.get("status") == "online":
            return m.at
    return None


async def test_12_a_new_master_learns_of_the_worker_at_once(fresh_stack: FreshStack) -> None:
    """Case 12: a worker that started before the master, and the same worker when the master restarts,
    registers again within a few seconds of the master's presence, and then gets work."""
    stack = fresh_stack()
    cluster = stack.cluster
    cluster.kill_master(signal.SIGTERM)
    wait_until(lambda: cluster.processes["master"].has_exited(), "the master stops", 10)
    worker = stack.worker(wait=False)
    wait_until(lambda: stack.spy.registrations(worker.worker_id), "the worker registers with no master", 10)
    for round_ in ("late master", "restarted master"):
        await meet_new_master(stack, worker, round_)


async def meet_new_master(stack: Stack, worker: Worker, round_: str) -> None:
    """(Re)start the master; the worker must register again within REREGISTER_S of its presence and answer."""
    since = time.time()
    await asyncio.to_thread(stack.cluster.restart_master)
    await eventually(lambda: master_online_since(stack, since), f"{round_}: presence", 10)
    online = master_online_since(stack, since)
    assert online is not None
    await eventually(lambda: registered_since(stack, worker, online), f"{round_}: the worker registers again", 10)
    took = registered_since(stack, worker, online)[0] - online
    assert took <= REREGISTER_S, f"{round_}: registered {took:.1f} s after the master's presence"
    async with ChatClient(stack.cluster.web_url) as user:
        answer = await answer_of(await ask(user, f"hello, {round_}"), 15)
    assert answer.workerId == worker.worker_id and answer.error == ""


def verbose_broker(stack: Stack) -> None:
    """Restart the stack's broker logging everything (`log_type all`: denials and subscriptions too)."""
    assert stack.cluster.state_dir is not None
    config = stack.cluster.state_dir / "broker" / CONFIG_NAME
    config.write_text(config.read_text() + "log_type all\n")
    stack.cluster.restart_broker()
    wait_until(lambda: stack.cluster.status()["mqtt_connected"], "the master is back on the broker", 10)


def subscriptions(lines: list[str], client_id: str) -> list[str]:
    """Topic filters `client_id` subscribed to, from Mosquitto's debug log: after `Received SUBSCRIBE from
    <id>`, each filter's `\t<filter> (QoS n)` line, each followed by its `log_type subscribe` line `<id> n
    <filter>` (a SUBSCRIBE with several filters, as the Go worker's, has them one after the other, in any
    order)."""
    found, inside = [], False
    echo = re.compile(rf"{re.escape(client_id)} \d \S+$")
    for line in lines:
        if "Received SUBSCRIBE from " in line:
            inside = line.rstrip().endswith(f"Received SUBSCRIBE from {client_id}")
            continue
        match = re.search(r"\t(\S+) \(QoS \d\)", line)
        if inside and match:
            found.append(match.group(1))
        elif not (inside and echo.search(line.rstrip())):
            inside = False
    return found


async def test_15_acl_with_another_prefix_no_denials_only_its_own_topics(fresh_stack: FreshStack) -> None:
    """Case 15: under the ACL with TOPIC_PREFIX `conformance-acl`, the worker does its work without a single
    denied packet in the broker's log, and subscribes only to its own task topic and the master's presence.
    (A worker-user client publishing where it may not shows that the log would tell.)"""
    prefix = "conformance-acl"
    stack = fresh_stack(topic_prefix=prefix)
    verbose_broker(stack)
    worker = stack.worker()
    async with ChatClient(stack.cluster.web_url) as user:
        answer = await answer_of(await ask(user, "under a strict ACL"), 15)
    assert answer.workerId == worker.worker_id and answer.error == ""
    await asyncio.to_thread(stack.cluster.stop_worker, worker.worker_id)
    intruder = f"conformance-intruder-{uuid.uuid4().hex[:6]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=intruder)
    client.username_pw_set(*stack.cluster.credentials.login("worker"))
    client.connect("127.0.0.1", stack.cluster.mqtt_port)
    client.loop_start()
    try:
        client.publish(f"{prefix}/results", b"{}", qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
    lines = stack.logs.of("mosquitto")
    wait_until(
        lambda: [x for x in stack.logs.of("mosquitto") if "Denied" in x and intruder in x], "the probe's denial", 5
    )
    denied = [line for line in stack.logs.of("mosquitto") if "Denied" in line and intruder not in line]
    assert not denied, denied
    subscribed = subscriptions(lines, worker.worker_id)
    own = {f"{prefix}/workers/{worker.worker_id}/tasks", f"{prefix}/master/status"}
    assert f"{prefix}/workers/{worker.worker_id}/tasks" in subscribed, subscribed
    assert set(subscribed) <= own, subscribed


async def test_18_secrets_stay_out_of_output_topics_and_results(stack: Stack) -> None:
    """Case 18: a user's key and the worker's MQTT_PASSWORD appear in none of the worker's output (at
    LOG_LEVEL=DEBUG, through answers, Gemini failures and a stop), in no MQTT message but the task sent to
    that worker, and in no field of any result."""
    secret = f"LEAK{uuid.uuid4().hex}"
    password = stack.cluster.credentials.login("worker")[1]
    worker = stack.worker({"LOG_LEVEL": "DEBUG"})
    async with ChatClient(stack.cluster.web_url) as user:
        for kind in ("fake-ok", "fake-bad", "fake-quota"):
            answer = await answer_of(await ask(user, f"keep {kind} safe", api_key=f"{kind}-{secret}"))
            assert answer.workerId == worker.worker_id and secret not in str(answer.dump())
    await asyncio.to_thread(stack.cluster.stop_worker, worker.worker_id)
    stack.spy.sync()
    output = stack.worker_lines(worker)
    assert output, "the worker printed nothing: nothing was checked"
    assert not [line for line in output if secret in line or password in line]
    carrying = {m.topic for m in stack.spy.all() if secret.encode() in m.payload}
    assert carrying == {f"{stack.spy.prefix}/workers/{worker.worker_id}/tasks"}, carrying
    assert not [m.topic for m in stack.spy.all() if password.encode() in m.payload]
    assert stack.tap is not None
    results = stack.tap.results(worker.worker_id)
    assert len(results) == 3
    assert not [r for r in results if secret in str(r["result"]) or password in str(r["result"])]


async def test_19_tls_to_the_broker_and_the_master(fresh_stack: FreshStack, tmp_path: Path) -> None:
    """Case 19: with a TLS-only broker (MQTT_TLS_CA) and a TLS-only gRPC server (GRPC_TLS_CA), the worker
    registers and its result is accepted."""
    tls = make_tls(tmp_path / "tls")
    stack = fresh_stack(
        broker_tls=BrokerTls(tls.ca, tls.cert, tls.key),
        extra_env={"GRPC_TLS_CERT": str(tls.cert), "GRPC_TLS_KEY": str(tls.key), "GRPC_TLS_CA": str(tls.ca)},
    )
    worker = stack.worker()
    async with ChatClient(stack.cluster.web_url) as user:
        answer = await answer_of(await ask(user, "over TLS both ways"), 15)
    assert answer.workerId == worker.worker_id and answer.error == ""


async def test_21_under_a_lean_master_per_task_messages_are_all_or_none(fresh_stack: FreshStack) -> None:
    """Case 21: a master whose presence says `task_messages: false` needs no busy, idle or log line per task.
    A worker that knows the field registers with `task_messages: false` and leaves them out; one that does not
    sends them all, as in case 2. Either way every question is answered once."""
    stack = fresh_stack(extra_env={"TASK_MESSAGES": "false"})
    worker = stack.worker()
    async with ChatClient(stack.cluster.web_url) as user:
        asked = [await ask(user, f"lean {i}") for i in range(3)]
        for exchange in asked:
            assert (await answer_of(exchange)).workerId == worker.worker_id
    task_ids = {e.task_id for e in asked}
    await asyncio.sleep(1.0)  # room for a late status
    lean = any(r.get("task_messages") is False for r in stack.spy.registrations(worker.worker_id))
    assert lean or stack.language not in OURS, f"our {stack.language} worker follows a lean master (PROTOCOL.md)"
    per_task = [s for s in stack.spy.statuses(worker.worker_id) if s.get("task_id") in task_ids]
    if lean:
        assert per_task == [], per_task  # it said it leaves them out: it does
    else:
        assert {(s["task_id"], s["status"]) for s in per_task} == {(t, st) for t in task_ids for st in ("busy", "idle")}


async def test_22_a_presence_with_a_lower_epoch_than_one_already_seen_is_ignored(fresh_stack: FreshStack) -> None:
    """Case 22: the worker keeps the highest leader epoch it has seen on the master's presence (PROTOCOL.md,
    Epochs). A presence with epoch 7 and a new timestamp: it registers again; then one with epoch 5 (a deposed
    leader, which also says `task_messages: false`): it does not register again and still sends its per-task
    messages; then one with epoch 8: it registers again. The master's own presence is put back at the end."""
    stack = fresh_stack()
    worker = stack.worker()
    stack.spy.sync()
    onlines = [m for m in stack.spy.on("master/status") if (m.json() or {}).get("status") == "online"]
    assert onlines, "the spy saw no presence of the master"
    master = onlines[-1]
    await asyncio.sleep(1.0)  # room for the registration the master's presence itself causes

    async def announce(epoch: int, **extra: object) -> float:
        """Publish a presence as a leader of `epoch` would (retained, QoS 1, a new timestamp); when it arrived."""
        payload = json.dumps({**master.json(), "timestamp": now_ms(), "epoch": epoch, **extra}).encode()
        stack.spy.publish("master/status", payload, retain=True)
        await eventually(
            lambda: [m for m in stack.spy.on("master/status") if m.payload == payload], "the spy gets it", 5
        )
        return next(m.at for m in stack.spy.on("master/status") if m.payload == payload)

    async def registers_again(epoch: int) -> None:
        at = await announce(epoch)
        await eventually(lambda: registered_since(stack, worker, at), f"epoch {epoch}: the worker registers again", 10)
        took = registered_since(stack, worker, at)[0] - at
        assert took <= REREGISTER_S, f"epoch {epoch}: registered {took:.1f} s after the presence"

    try:
        await registers_again(7)
        at = await announce(5, task_messages=False)
        await asyncio.sleep(REREGISTER_S)
        stack.spy.sync()
        assert registered_since(stack, worker, at) == [], "the worker registered again for a lower epoch"
        async with ChatClient(stack.cluster.web_url) as user:
            exchange = await ask(user, "after a deposed leader spoke")
            assert (await answer_of(exchange)).workerId == worker.worker_id
        await eventually(
            lambda: (
                {s["status"] for s in stack.spy.statuses(worker.worker_id) if s.get("task_id") == exchange.task_id}
                == {"busy", "idle"}
            ),
            "the worker still sends busy and idle (the deposed leader's `task_messages: false` changed nothing)",
            5,
        )
        await registers_again(8)
        assert not [r for r in stack.spy.registrations(worker.worker_id) if r.get("task_messages") is False]
    finally:
        stack.spy.publish("master/status", master.payload, retain=True)  # the master's own presence, as it was
