"""Baseline workers (no Last Will, no task ids, never re-registering) fail fast and are not forgotten: leases
bounded by observed durations, idle after a lost result, the broker's log, and the journal across restarts."""

from __future__ import annotations

import pytest

from services.master import broker_log
from services.master.dispatch import Dispatcher, ResultClaim, Task
from services.master.journal import Journal, KnownWorker
from services.master.registry import WorkerState
from services.protocol import Topics
from tests.unit.master_fakes import Clock, Rig, started
from tests.unit.test_dispatch import assigned, task, worker_of

TOPICS = Topics()


def baseline_claim(worker_id: str) -> ResultClaim:
    return ResultClaim(worker_id=worker_id, task_id="", attempt=0, token="")


def answered_in(d: Dispatcher, worker_id: str, t: Task, took_ms: int) -> None:
    """`worker_id` took `t` at once, and its result comes `took_ms` later."""
    d.worker_status(worker_id, "busy", t.assigned_ms)
    assert d.result(baseline_claim(worker_id), t.assigned_ms + took_ms).accepted


# -- leases -----------------------------------------------------------------------------------------


def test_a_baseline_workers_lease_is_bounded_by_the_longest_task_seen() -> None:
    d = Dispatcher(allow_baseline=True, lease_ms=60_000)
    d.worker_online("python-worker-a", "python", 0)
    first = task(1)
    d.submit(first, 0)
    assert first.lease_until_ms == 60_000  # nothing observed yet
    answered_in(d, "python-worker-a", first, 10_000)
    second = task(2, 10_000)
    d.submit(second, 10_000)
    assert second.lease_until_ms == 10_000 + 15_000  # half as long again
    d.worker_online("go-worker-new", "go", 10_000)
    third = task(3, 10_000)
    d.submit(third, 10_000)
    assert (third.worker_id, third.lease_until_ms) == ("go-worker-new", 25_000)  # the fleet's longest


def test_short_tasks_get_at_least_two_more_seconds_and_no_lease_exceeds_the_setting() -> None:
    d = Dispatcher(allow_baseline=True, lease_ms=20_000)
    d.worker_online("python-worker-a", "python", 0)
    first = task(1)
    d.submit(first, 0)
    answered_in(d, "python-worker-a", first, 500)
    second = task(2, 500)
    d.submit(second, 500)
    assert second.lease_until_ms == 500 + 2_500
    answered_in(d, "python-worker-a", second, 19_000)
    third = task(3, 20_000)
    d.submit(third, 20_000)
    assert third.lease_until_ms == 20_000 + 20_000


def test_our_workers_keep_the_lease_they_announce() -> None:
    d = Dispatcher(allow_baseline=True, lease_ms=60_000, lease_margin_ms=15_000)
    d.worker_online("python-worker-a", "python", 0, max_task_ms=40_000)
    first = task(1)
    d.submit(first, 0)
    d.result(ResultClaim("python-worker-a", "t1", first.attempt, first.token), 1_000)
    second = task(2, 1_000)
    d.submit(second, 1_000)
    assert second.lease_until_ms == 1_000 + 55_000


# -- idle reports -----------------------------------------------------------------------------------


def test_a_baseline_idle_after_its_busy_frees_it_when_no_result_was_taken() -> None:
    d = Dispatcher(allow_baseline=True)
    d.worker_online("python-worker-a", "python", 0)
    d.submit(task(1), 0)
    d.worker_status("python-worker-a", "busy", 10)
    outcome = d.worker_status("python-worker-a", "idle", 10_000)  # its result never reached us
    assert [r.reason for r in outcome.requeued] == ["its result never arrived"]
    assert assigned(outcome) == [("t1", "python-worker-a")]  # free again, and the only worker
    assert task(1).attempt == 0 and d.task("t1") is not None and d.task("t1").attempt == 2  # type: ignore[union-attr]


def test_a_baseline_idle_before_its_busy_is_stale_and_the_assignment_stands() -> None:
    d = Dispatcher(allow_baseline=True)
    d.worker_online("python-worker-a", "python", 0)
    d.submit(task(1), 0)
    assert d.worker_status("python-worker-a", "idle", 5).requeued == []  # sent after its previous result
    assert worker_of(d, "python-worker-a").task_id == "t1"


# -- remembered across a restart ----------------------------------------------------------------------


def test_a_remembered_worker_gets_a_short_lease_until_it_reports_busy() -> None:
    d = Dispatcher(allow_baseline=True, lease_ms=60_000, confirm_ms=5_000)
    d.remember("python-worker-a", "python", 0, 0)
    d.hold(False, 0)
    t = task(1)
    d.submit(t, 0)
    assert (t.worker_id, t.lease_until_ms) == ("python-worker-a", 5_000)
    d.worker_status("python-worker-a", "busy", 50)
    assert t.lease_until_ms == 60_000


def test_a_remembered_worker_that_died_meanwhile_loses_its_task_after_the_short_lease() -> None:
    d = Dispatcher(allow_baseline=True, confirm_ms=5_000)
    d.remember("python-worker-dead", "python", 10_000, 0)
    d.remember("python-worker-live", "python", 10_000, 0)
    d.submit(task(1), 0)
    assert task(1).worker_id is None and d.task("t1").worker_id == "python-worker-dead"  # type: ignore[union-attr]
    outcome = d.expire(5_000)
    assert assigned(outcome) == [("t1", "python-worker-live")]
    assert worker_of(d, "python-worker-dead").state is WorkerState.LOST


def test_a_restored_task_of_a_remembered_worker_keeps_its_lease_and_an_idle_frees_it() -> None:
    d = Dispatcher(allow_baseline=True, lease_ms=60_000, restore_grace_ms=15_000)
    d.remember("python-worker-a", "python", 30_000, 100_000)
    held = Task("t1", "s1", "q", submitted_ms=90_000, attempt=1, worker_id="python-worker-a", assigned_ms=95_000)
    held.state = held.state.ASSIGNED
    d.restore([held], 100_000)
    assert held.lease_until_ms == 95_000 + 45_000  # not the 15 s grace: it will not register again
    assert d.expire(130_000).requeued == []
    outcome = d.worker_status("python-worker-a", "idle", 131_000)  # it finished, the old master is gone
    assert [r.reason for r in outcome.requeued] == ["its result never arrived"]


# -- the broker's log -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "line", "event"),
    [
        (
            broker_log.SUBSCRIBE_TOPIC,
            "1: orig x 0 upb/workers/go-worker-1/tasks",
            broker_log.Subscribed("orig x", "go-worker-1"),
        ),
        (broker_log.SUBSCRIBE_TOPIC, "1: c 1 upb/workers/+/tasks", None),
        (broker_log.SUBSCRIBE_TOPIC, "1: c 0 upb/master/status", None),
        (
            broker_log.NOTICE_TOPIC,
            "2026-12-07T00:25:08: Client orig x closed its connection.",
            broker_log.Disconnected("orig x"),
        ),
        (broker_log.NOTICE_TOPIC, "1: Client c has exceeded timeout, disconnecting.", broker_log.Disconnected("c")),
        (broker_log.NOTICE_TOPIC, "1: Socket error on client c, disconnecting.", broker_log.Disconnected("c")),
        (broker_log.NOTICE_TOPIC, "1: Client c disconnected.", broker_log.Disconnected("c")),
        (broker_log.NOTICE_TOPIC, "1: New client connected from 127.0.0.1:5 as c (p2, c1, k60).", None),
        (broker_log.NOTICE_TOPIC, "Client c closed its connection.", None),  # no timestamp: not a log line
        ("upb/logs", "1: Client c closed its connection.", None),
    ],
)
def test_the_broker_log_names_subscriptions_to_task_topics_and_closed_connections(
    topic: str, line: str, event: object
) -> None:
    assert broker_log.parse(topic, line.encode(), TOPICS) == event


async def baseline_rig(journal: Journal | None = None, clock: Clock | None = None) -> Rig:
    r = await started(journal, clock, allow_baseline_workers=True, lease_seconds=60)
    await r.master.on_broker_event(broker_log.Subscribed("orig-a", "python-worker-a"))
    await r.worker("python-worker-a")
    return r


async def test_a_baseline_worker_whose_connection_closed_gives_its_task_to_another_at_once() -> None:
    r = await baseline_rig()
    task_id = await r.ask()
    await r.worker("go-worker-ours", max_task_ms=20_000)
    await r.master.on_broker_event(broker_log.Disconnected("orig-a"))
    assert (r.last_task("go-worker-ours").task_id, r.last_task("go-worker-ours").attempt) == (task_id, 2)
    assert r.master.dispatcher.registry.get("python-worker-a").state is WorkerState.OFFLINE  # type: ignore[union-attr]
    assert r.journal.known_workers() == []


async def test_our_workers_connections_are_left_to_their_last_will() -> None:
    r = await started(allow_baseline_workers=True)
    await r.master.on_broker_event(broker_log.Subscribed("go-worker-ours", "go-worker-ours"))
    await r.worker("go-worker-ours", max_task_ms=20_000)
    await r.ask()
    await r.master.on_broker_event(broker_log.Disconnected("go-worker-ours"))
    assert r.master.dispatcher.registry.get("go-worker-ours").task_id is not None  # type: ignore[union-attr]
    assert r.journal.known_workers() == []  # ours register again after a restart: not journaled


async def test_a_restarted_master_remembers_baseline_workers_and_their_connections() -> None:
    journal, clock = Journal(":memory:"), Clock()
    before = await baseline_rig(journal, clock)
    await before.ask("first")
    clock.advance(10_000)
    await before.status("python-worker-a", "busy")
    assert (await before.answer(before.last_task("python-worker-a"), task_id="", token="", attempt=0))[0]
    assert journal.known_workers() == [KnownWorker("python-worker-a", "go", "orig-a", 10_000)]

    after = await started(journal, clock, allow_baseline_workers=True)
    assert after.master.status_summary().idle == 1
    task_id = await after.ask("second")
    assert after.last_task("python-worker-a").task_id == task_id
    await after.master.on_broker_event(broker_log.Disconnected("orig-a"))  # known by its client id
    assert after.master.status().queue_length == 1
    assert journal.known_workers() == []


async def test_a_closed_connection_of_a_worker_connected_again_elsewhere_changes_nothing() -> None:
    r = await baseline_rig()
    await r.master.on_broker_event(broker_log.Subscribed("orig-a-2", "python-worker-a"))  # a new connection
    await r.master.on_broker_event(broker_log.Disconnected("orig-a"))  # the old one's close, told late
    assert r.master.dispatcher.registry.get("python-worker-a").state is WorkerState.IDLE  # type: ignore[union-attr]
    await r.master.on_broker_event(broker_log.Disconnected("orig-a-2"))
    assert r.master.dispatcher.registry.get("python-worker-a").state is WorkerState.OFFLINE  # type: ignore[union-attr]
