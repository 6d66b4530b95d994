"""No user's API key at rest in the clear: after questions with a key end, and after a clean stop, no byte of the
state directory (the journal, its WAL and shared memory, the broker's persistence and config) nor of the logs holds
it, with or without a crash of the master in the middle."""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path

from lab.loadgen.client import ChatClient, Exchange
from services.master.results import KEY_NOT_KEPT_NOTE
from tests.conftest import ClusterFactory
from tests.waiting import eventually

QUESTIONS = 6


def user_key() -> str:
    return "AIza-test-" + secrets.token_hex(12)


def hits(root: Path, key: str) -> dict[str, int]:
    """Files under `root` (every byte) that hold the key, or its random part, and how many times."""
    needles = (key.encode(), key.removeprefix("AIza-test-").encode())
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        count = max(data.count(n) for n in needles)
        if count:
            found[str(path.relative_to(root))] = count
    return found


def state_files(state_dir: Path) -> set[str]:
    return {str(p.relative_to(state_dir)) for p in state_dir.rglob("*") if p.is_file()}


async def ask_all(user: ChatClient, key: str, label: str) -> list[Exchange]:
    asked = [await user.ask(f"{label} {i}", api_key=key) for i in range(QUESTIONS)]
    assert all(e.task_id for e in asked), [e.ack for e in asked]
    return asked


def answered(asked: list[Exchange], label: str) -> None:
    assert {e.answer.query for e in asked if e.answer} == {f"{label} {i}" for i in range(QUESTIONS)}


async def test_no_key_is_left_in_the_state_directory_or_the_logs(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    key = user_key()
    cluster = cluster_factory(workers=2, state_dir=tmp_path / "state", extra_env={"LOG_LEVEL": "DEBUG"})
    async with ChatClient(cluster.web_url) as user:
        asked = await ask_all(user, key, "keep my key")
        await user.wait_answers(QUESTIONS, timeout=30)
    answered(asked, "keep my key")
    await asyncio.sleep(3)  # a checkpoint of the journal's WAL
    assert hits(tmp_path, key) == {}, "while running, after the questions ended"
    cluster.stop()
    expected = {"journal.sqlite3", "broker/mosquitto-data/mosquitto.db", "broker/mosquitto.conf"}
    assert expected <= state_files(tmp_path / "state")
    assert (tmp_path / "cluster.log").stat().st_size > 0
    assert hits(tmp_path, key) == {}, "after a clean stop"


async def test_no_key_is_left_after_the_master_is_killed_with_questions_in_flight(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    key = user_key()
    cluster = cluster_factory(workers=2, work_seconds=1.0, state_dir=tmp_path / "state")
    async with ChatClient(cluster.web_url) as user:
        asked = await ask_all(user, key, "through a crash")  # 2 working, 4 queued: sealed in the journal
        await eventually(lambda: asked[0].worker_id and asked[1].worker_id, "two questions assigned")
        cluster.kill_master(signal.SIGKILL)
        assert hits(tmp_path, key) == {}, "right after the crash"
        cluster.restart_master()  # the same JOURNAL_KEY: the restored tasks keep their users' keys
        await user.wait_answers(QUESTIONS, timeout=60)
    answered(asked, "through a crash")
    assert not any(KEY_NOT_KEPT_NOTE in e.answer.response for e in asked if e.answer)
    cluster.stop()
    assert hits(tmp_path, key) == {}, "after a clean stop"


async def test_without_a_journal_key_a_crash_loses_the_keys_and_the_answers_say_so(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    key = user_key()
    cluster = cluster_factory(workers=1, work_seconds=1.0, state_dir=tmp_path / "state", extra_env={"JOURNAL_KEY": ""})
    async with ChatClient(cluster.web_url) as user:
        asked = await ask_all(user, key, "no journal key")  # 1 working, 5 queued: their keys in memory only
        await eventually(lambda: asked[0].worker_id, "a question assigned")
        assert hits(tmp_path, key) == {}, "while in flight"
        cluster.kill_master(signal.SIGKILL)
        cluster.restart_master()
        await user.wait_answers(QUESTIONS, timeout=60)
    answered(asked, "no journal key")
    noted = [e.answer.query for e in asked if e.answer and KEY_NOT_KEPT_NOTE in e.answer.response]
    assert set(noted) == {f"no journal key {i}" for i in range(1, QUESTIONS)}  # the first one's worker had it
    cluster.stop()
    assert hits(tmp_path, key) == {}, "after a clean stop"


async def test_a_task_message_for_a_worker_that_vanished_leaves_the_brokers_persistence(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    """A task message the broker sent to a worker that never acknowledged it sits in that worker's persistent
    session, and a save (a clean stop, autosave) would write it, key included, to mosquitto.db until the
    session expires (a day). The master discards the session when it forgets the worker."""
    key = user_key()
    env = {"MQTT_KEEPALIVE": "2", "FORGET_WORKERS_AFTER_SECONDS": "1"}
    cluster = cluster_factory(workers=2, state_dir=tmp_path / "state", restart=False, extra_env=env)
    victim = cluster.worker_ids[0]
    cluster.signal_worker(victim, signal.SIGSTOP)  # hung: its connection is open, it acknowledges nothing
    async with ChatClient(cluster.web_url) as user:
        asked = [await user.ask(f"vanished {i}", api_key=key) for i in range(2)]  # one each
        await user.wait_answers(2, timeout=30)  # the hung one's task goes to the other after its Last Will
    assert all(e.answer and e.answer.workerId != victim for e in asked)
    await eventually(
        lambda: victim not in {w["worker_id"] for w in cluster.status()["workers"]}, "the master forgot it", 10
    )
    await asyncio.sleep(1)  # the master's clean-session connection under the victim's id, in the background
    cluster.kill_worker(victim, signal.SIGKILL)
    cluster.stop()
    assert hits(tmp_path, key) == {}
