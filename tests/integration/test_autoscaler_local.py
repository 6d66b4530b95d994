"""The autoscaler on a real local system (Mosquitto, master, the autoscaler and the workers it starts): a burst
of questions adds workers within a stated time and the fleet goes back to its minimum after the load and the
scale-down window; every question is answered exactly once, also while workers are stopped under load."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lab.loadgen.client import ChatClient, Exchange
from lab.system.local import LocalCluster
from tests.conftest import ClusterFactory, require_mosquitto
from tests.integration.test_lab_up import STOP_TIMEOUT_S, LabUp, describe_pids, marked_pids, wait_gone

MIN, MAX = 1, 4
WORK_S = 1.5
SCALE_UP_WITHIN_S = 15.0  # from the first question of the burst to a second worker listed
# Short windows so the test sees a whole cycle; the master's own bound on the queue is off (0), so that the
# burst is queued, not refused, and the autoscaler has a backlog to answer.
AUTOSCALER_ENV = {
    "AUTOSCALE_INTERVAL_S": "0.5",
    "AUTOSCALE_MEASURE_WINDOW_S": "5",
    "COOLDOWN_S": "2",
    "SCALE_DOWN_WINDOW_S": "6",
    "LATENCY_TARGET_S": "5",
    "LATENCY_TARGET_SECONDS": "0",
    "RATE_PER_MINUTE": "600",
    "MAX_IN_FLIGHT_PER_SESSION": "50",
}
BACK_TO_MIN_WITHIN_S = 40.0  # after the last answer: the measuring and scale-down windows, cooldowns, slack


def autoscaled(cluster_factory: ClusterFactory) -> LocalCluster:
    return cluster_factory(workers=1, work_seconds=WORK_S, autoscale=(MIN, MAX), extra_env=AUTOSCALER_ENV)


@asynccontextmanager
async def operator(cluster: LocalCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.web_url, headers=cluster.operator_headers, timeout=5) as http:
        yield http


async def listed_ids(http: httpx.AsyncClient) -> set[str]:
    """Ids of the workers the master lists as idle or busy."""
    status = (await http.get("/api/status")).json()
    return {w["worker_id"] for w in status["workers"] if w["state"] in ("idle", "busy")}


async def fleet(http: httpx.AsyncClient) -> int:
    """How many workers the master lists as idle or busy."""
    return len(await listed_ids(http))


async def until(
    http: httpx.AsyncClient,
    condition: str,
    size: Callable[[int], bool],
    timeout: float,
    ids: Callable[[set[str]], bool] = lambda _: True,
) -> float:
    """Poll the listed workers until `size(how many)` and `ids(which)`; the seconds it took (fails naming
    `condition` after `timeout`)."""
    start = time.monotonic()
    while not (size(len(listed := await listed_ids(http))) and ids(listed)):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{condition}: not within {timeout} s (listed: {sorted(listed)})")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def counter(http: httpx.AsyncClient, family: str, **labels: str) -> float:
    """One sample of the master's /metrics (0 when absent)."""
    for metric in text_string_to_metric_families((await http.get("/metrics")).text):
        for sample in metric.samples:
            if sample.name == family and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def exchanges(users: list[ChatClient]) -> Iterator[Exchange]:
    for user in users:
        yield from user.exchanges.values()


def assert_answered_exactly_once(users: list[ChatClient], asked: int) -> None:
    every = list(exchanges(users))
    assert len(every) == asked, f"{len(every)} of {asked} questions acknowledged with a task id"
    assert len({e.task_id for e in every}) == asked  # no task id given twice
    failed = [(e.task_id, e.answer.error if e.answer else "no answer") for e in every if not e.answer or e.answer.error]
    assert not failed, failed
    assert all(len(e.answers) == 1 for e in every), [len(e.answers) for e in every if len(e.answers) != 1]
    assert all(e.answer is not None and e.answer.query == e.query for e in every)


async def ask_burst(users: list[ChatClient], per_user: int, tag: str) -> None:
    async def one(index: int, user: ChatClient) -> None:
        for i in range(per_user):
            exchange = await user.ask(f"{tag} {index}.{i}")
            assert exchange.task_id, exchange.ack

    await asyncio.gather(*(one(index, user) for index, user in enumerate(users)))


async def test_a_burst_scales_up_within_15_s_and_the_fleet_returns_to_its_minimum(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = autoscaled(cluster_factory)
    users = [ChatClient(cluster.web_url) for _ in range(4)]
    async with operator(cluster) as http:
        assert await fleet(http) == MIN  # the cluster was ready with the autoscaler's minimum
        for user in users:
            await user.connect()
        try:
            await ask_burst(users, 5, "burst")  # 20 questions of 1.5 s: 30 s for one worker
            took = await until(http, "a second worker", lambda n: n > MIN, SCALE_UP_WITHIN_S)
            await asyncio.gather(*(user.wait_answers(5, timeout=60) for user in users))
            await asyncio.sleep(0.5)  # on purpose: a duplicate answer would arrive right after
            assert_answered_exactly_once(users, 20)
            answered_by = {e.answer.workerId for e in exchanges(users) if e.answer}
            assert len(answered_by) > 1, answered_by  # the added workers took tasks
            await until(http, f"back to {MIN} worker", lambda n: n == MIN, BACK_TO_MIN_WITHIN_S)
            # Every change went to the master (its log, Watch stream and metrics).
            assert await counter(http, "autoscaler_decisions_total", direction="up") >= 1
            assert await counter(http, "autoscaler_decisions_total", direction="down") >= 1
            assert await counter(http, "autoscaler_target_workers") == MIN
        finally:
            for user in users:
                await user.close()
    assert took <= SCALE_UP_WITHIN_S
    assert "autoscaler" not in cluster.exited()


async def test_a_scale_down_while_questions_keep_arriving_loses_nothing(cluster_factory: ClusterFactory) -> None:
    cluster = autoscaled(cluster_factory)
    users = [ChatClient(cluster.web_url) for _ in range(4)]
    async with operator(cluster) as http:
        for user in users:
            await user.connect()
        try:
            await ask_burst(users, 6, "burst")
            await until(http, f"{MAX} workers", lambda n: n == MAX, SCALE_UP_WITHIN_S + 10)
            # Then a trickle, about one worker's worth (0.5/s of 1.5 s each), until the fleet has shrunk and
            # a few more questions have gone through the smaller fleet.
            asked, shrunk_at = 24, None
            start = time.monotonic()
            while time.monotonic() - start < 60:
                user = users[asked % len(users)]
                assert (await user.ask(f"trickle {asked}")).task_id
                asked += 1
                size = await fleet(http)
                if shrunk_at is None and size < MAX:
                    shrunk_at = asked
                if shrunk_at is not None and asked >= shrunk_at + 5:
                    break
                await asyncio.sleep(2.0)
            assert shrunk_at is not None, "the fleet did not shrink while questions kept arriving"
            per_user = [len(user.exchanges) for user in users]
            await asyncio.gather(*(user.wait_answers(n, timeout=60) for user, n in zip(users, per_user, strict=True)))
            await asyncio.sleep(0.5)  # on purpose: a duplicate answer would arrive right after
            assert_answered_exactly_once(users, asked)
            # Only idle, retired workers were stopped: no task had to be handed back and given again.
            assert await counter(http, "swarm_tasks_total", outcome="requeued") == 0
        finally:
            for user in users:
                await user.close()


async def test_a_killed_autoscaler_is_restarted_and_its_workers_do_not_linger(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.2, autoscale=(2, 3), extra_env=AUTOSCALER_ENV)
    async with operator(cluster) as http:
        before = await listed_ids(http)
        assert len(before) == 2
        cluster.processes["autoscaler"].send_signal(signal.SIGKILL)  # a crash: nothing of its own runs after it
        # Its workers get SIGTERM from the kernel (parent-death signal) and leave; the restarted one starts two.
        await until(http, "two new workers", lambda n: n == 2, 30.0, lambda ids: not ids & before)
        assert [r.name for r in cluster.restarts] == ["autoscaler"]
        states = {w["worker_id"]: w["state"] for w in (await http.get("/api/status")).json()["workers"]}
        assert all(states.get(old, "offline") == "offline" for old in before), states


def test_lab_up_autoscale_starts_the_minimum_and_a_killed_lab_leaves_nothing_behind() -> None:
    require_mosquitto()
    lab = LabUp("--autoscale", "1..3")
    try:
        lab.wait_for(r"^lab up: starting .* and workers \(1\.\.3 python workers, autoscaled\)", 15)
        lab.wait_for(r"^ready: 1 worker idle, autoscaled 1\.\.3, queue 0", 45)
        assert "autoscaler | " in lab.output() and "0 -> 1 workers" in lab.output()  # its decision shown
        # The lab, Mosquitto, the master's two processes, the autoscaler and its one worker.
        assert len(marked_pids(lab.marker)) == 6, describe_pids(marked_pids(lab.marker))
        lab.proc.send_signal(signal.SIGKILL)
        lab.proc.wait()
        # The autoscaler gets SIGTERM from the kernel (parent-death signal) and stops its worker before it exits.
        left = wait_gone(lab.marker, STOP_TIMEOUT_S)
        assert not left, f"left behind after SIGKILL of lab up:\n{describe_pids(left)}"
    finally:
        lab.cleanup()
