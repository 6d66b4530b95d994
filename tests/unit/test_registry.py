"""Tests of the worker registry: states, idle order and counts."""

from __future__ import annotations

import random

import pytest

from services.master.registry import Registry, WorkerState, language_of


@pytest.mark.parametrize(
    ("worker_id", "language"),
    [
        ("python-worker-3f9a1c", "python"),
        ("go-worker-ab12", "go"),
        ("java-worker-x", "java"),
        ("worker-7", "unknown"),
        ("-worker-abc", "unknown"),
        ("custom", "unknown"),
    ],
)
def test_language_is_read_from_a_baseline_worker_id(worker_id: str, language: str) -> None:
    assert language_of(worker_id) == language


def test_new_worker_is_known_but_not_assignable_until_marked_idle() -> None:
    registry = Registry()
    worker = registry.upsert("python-worker-1", "python", 5)
    assert worker.state is WorkerState.BUSY
    assert registry.take_longest_idle() is None
    assert (worker.registered_ms, worker.last_seen_ms) == (5, 5)
    assert registry.get("python-worker-1") is worker


def test_upsert_of_a_known_worker_updates_it_in_place() -> None:
    registry = Registry()
    first = registry.upsert("w1", "go", 1)
    again = registry.upsert("w1", "", 9)
    assert again is first
    assert (again.language, again.registered_ms, again.last_seen_ms) == ("go", 1, 9)
    assert len(registry) == 1


def test_worker_idle_longest_comes_first() -> None:
    registry = Registry()
    a, b, c = (registry.upsert(w, "python", 0) for w in ("a", "b", "c"))
    registry.mark_idle(b, 1)
    registry.mark_idle(a, 2)
    registry.mark_idle(c, 3)
    assert registry.take_longest_idle() is b


def test_worker_marked_idle_again_goes_to_the_back_of_the_idle_order() -> None:
    registry = Registry()
    a, b = registry.upsert("a", "python", 0), registry.upsert("b", "python", 0)
    registry.mark_idle(a, 1)
    registry.mark_idle(b, 2)
    registry.mark_idle(a, 3)
    assert registry.take_longest_idle() is b


def test_take_longest_idle_does_not_take_the_worker_out_of_the_idle_order() -> None:
    registry = Registry()
    a = registry.upsert("a", "python", 0)
    registry.mark_idle(a, 1)
    assert registry.take_longest_idle() is a
    assert registry.take_longest_idle() is a
    assert a.state is WorkerState.IDLE


def test_busy_worker_holds_its_task_and_is_not_assignable() -> None:
    registry = Registry()
    a = registry.upsert("a", "python", 0)
    registry.mark_idle(a, 1)
    registry.mark_busy(a, "t1", 2)
    assert (a.state, a.task_id, a.last_seen_ms) == (WorkerState.BUSY, "t1", 2)
    assert registry.take_longest_idle() is None


def test_idle_worker_holds_no_task() -> None:
    registry = Registry()
    a = registry.upsert("a", "python", 0)
    registry.mark_busy(a, "t1", 1)
    registry.mark_idle(a, 2)
    assert (a.state, a.task_id) == (WorkerState.IDLE, None)


def test_offline_worker_drops_its_task_and_is_not_assignable() -> None:
    registry = Registry()
    a = registry.upsert("a", "python", 0)
    registry.mark_busy(a, "t1", 1)
    registry.mark_offline(a, 2)
    assert (a.state, a.task_id) == (WorkerState.OFFLINE, None)
    assert registry.take_longest_idle() is None
    registry.mark_idle(a, 3)
    registry.mark_offline(a, 4)
    assert registry.take_longest_idle() is None


def test_counts_per_state_and_iteration_over_all_workers() -> None:
    registry = Registry()
    a, b, c, d = (registry.upsert(w, "python", 0) for w in ("a", "b", "c", "d"))
    registry.mark_idle(a, 1)
    registry.mark_idle(b, 1)
    registry.mark_busy(c, "t", 1)
    registry.mark_offline(d, 1)
    assert (
        registry.count(WorkerState.IDLE),
        registry.count(WorkerState.BUSY),
        registry.count(WorkerState.OFFLINE),
    ) == (2, 1, 1)
    assert len(registry) == 4
    assert sorted(w.worker_id for w in registry) == ["a", "b", "c", "d"]


def test_counts_kept_as_states_change_match_a_walk_over_the_workers() -> None:
    registry = Registry()
    rng = random.Random(3)
    ids = [f"python-worker-{i}" for i in range(12)]
    for step in range(2000):
        worker_id = rng.choice(ids)
        worker = registry.get(worker_id)
        action = rng.choice(["upsert", "idle", "busy", "offline", "idle"])
        if action == "upsert" or worker is None:
            registry.upsert(worker_id, "python", step)
        elif action == "idle":
            registry.mark_idle(worker, step)
        elif action == "busy":
            registry.mark_busy(worker, f"task-{step}", step)
        else:
            registry.mark_offline(worker, step)
        for state in WorkerState:
            assert registry.count(state) == sum(1 for w in registry if w.state is state), (step, state)
    assert sum(registry.count(s) for s in WorkerState) == len(registry) == len(ids)
