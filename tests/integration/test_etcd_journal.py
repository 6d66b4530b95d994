"""The task journal in etcd against a real etcd (Debian's etcd-server 3.4): the SQLite journal's behaviours where
they apply (a task's life, restore, sealed keys, group commit, durable), and what etcd adds (transactions split
at etcd's limits, the leader's fence, a new leader restoring what the old one committed)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest

from services.master.dispatch import Task, TaskState
from services.master.etcd.client import EtcdClient
from services.master.etcd.election import Leadership
from services.master.etcd.ops import Compare, create_revision_is
from services.master.etcd_journal import COMMIT_FLOOR_S, MAX_TXN_BYTES, EtcdJournal, Fence
from services.master.journal import Journal
from services.master.journal_records import NOT_KEPT, SEALED, JournalError, JournalKeyError, KeySealer
from services.master.service import Master
from services.master.settings import MasterSettings
from services.protocol import AiResponse, UserQuery
from tests.etcd_cluster import EtcdCluster, require_etcd
from tests.unit.master_fakes import Clock, RecordingPublisher, RecordingSender, Rig

SESSION = "session-1"
USER_KEY = "AIza-etcd-" + base64.b16encode(os.urandom(8)).decode()
TTL = 2


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One member, shared by the module's tests (each under a prefix of its own)."""
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-journal"), size=1) as cluster:
        yield cluster


@pytest.fixture
async def client(etcd1: EtcdCluster) -> AsyncIterator[EtcdClient]:
    async with EtcdClient(etcd1.endpoints) as c:
        yield c


@pytest.fixture
def prefix() -> str:
    return f"/sal-test/{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def fence(client: EtcdClient, prefix: str) -> Compare:
    """A leadership key created now: the journal's writes hold while it is not deleted or created again."""
    epoch = await client.put(prefix + "/leader", "m1")
    return create_revision_is(prefix + "/leader", epoch)


def task(task_id: str, api_key: str = "", at: int = 1) -> Task:
    return Task(task_id=task_id, session_id=SESSION, query=f"q-{task_id}", submitted_ms=at, api_key=api_key)


def answer(task_id: str) -> AiResponse:
    return AiResponse(taskId=task_id, query="q", response="a", workerId="w", processingTime=1, timestamp=2)


async def journal_at(
    client: EtcdClient,
    prefix: str,
    fence: Fence,
    key: bytes | None = None,
    *,
    commit_floor: float = COMMIT_FLOOR_S,
    max_bytes: int = MAX_TXN_BYTES,
) -> EtcdJournal:
    return await EtcdJournal.open(
        client, fence, KeySealer(key), prefix + "/journal", commit_floor=commit_floor, max_bytes=max_bytes
    )


async def records(client: EtcdClient, prefix: str) -> dict[str, dict[str, object]]:
    """What etcd holds under the journal's prefix: key (after the prefix) -> its JSON record."""
    snapshot = await client.get_prefix(prefix + "/journal/")
    start = len(prefix + "/journal/")
    return {kv.key.decode()[start:]: json.loads(kv.value) for kv in snapshot.kvs}


async def revision(client: EtcdClient) -> int:
    return (await client.get_prefix("/no-such-key/")).revision


async def test_a_tasks_life_is_one_record_until_its_answer_is_delivered(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    journal = await journal_at(client, prefix, fence)
    t = task("t1")
    journal.accepted(t)
    await journal.durable()
    assert (await records(client, prefix))["tasks/t1"]["state"] == "queued"

    t.attempt, t.token, t.worker_id, t.assigned_ms = 1, "tok", "w1", 5
    journal.assigned(t)
    await journal.durable()
    stored = (await records(client, prefix))["tasks/t1"]
    assert (stored["state"], stored["attempt"], stored["token"], stored["worker_id"]) == ("assigned", 1, "tok", "w1")

    journal.finished(t, answer("t1"), False, 9)
    await journal.durable()
    stored = (await records(client, prefix))["tasks/t1"]
    assert (stored["state"], stored["token"], stored["finished_ms"]) == ("answered", None, 9)
    assert [p.task_id for p in journal.pending_answers()] == ["t1"] and journal.open_tasks() == []

    journal.delivered("t1", 10)
    await journal.durable()
    assert await records(client, prefix) == {}
    await journal.close()


async def test_a_new_journal_restores_open_tasks_pending_answers_and_workers(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    first = await journal_at(client, prefix, fence)
    queued, running, done = task("q", at=3), task("r", at=1), task("d", at=2)
    for t in (queued, running, done):
        first.accepted(t)
    running.attempt, running.token, running.worker_id, running.assigned_ms = 2, "tok-r", "w1", 7
    first.assigned(running)
    first.finished(done, answer("d"), True, 8)
    first.worker_known("w1", "go", "client-1")
    first.worker_known("w1", "go", None)  # the client id stays
    first.worker_longest("w1", 1234)
    first.worker_known("w2", "python", None)
    first.worker_gone("w2")
    await first.close()

    second = await journal_at(client, prefix, fence)
    restored = second.open_tasks()
    assert [t.task_id for t in restored] == ["r", "q"]  # by submission
    r = restored[0]
    assert (r.state, r.attempt, r.token, r.worker_id, r.assigned_ms) == (TaskState.ASSIGNED, 2, "tok-r", "w1", 7)
    assert restored[1].state == TaskState.QUEUED and restored[1].token == ""
    (pending,) = second.pending_answers()
    assert (pending.task_id, pending.session_id, pending.finished_ms) == ("d", SESSION, 8)
    assert pending.payload == answer("d")
    assert [(w.worker_id, w.language, w.client_id, w.longest_task_ms) for w in second.known_workers()] == [
        ("w1", "go", "client-1", 1234)
    ]
    assert second.purge(9) == 1 and second.pending_answers() == []
    await second.close()
    assert set(await records(client, prefix)) == {"tasks/q", "tasks/r", "workers/w1"}


async def test_users_keys_are_sealed_and_never_in_etcd_in_the_clear(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    key = os.urandom(32)
    journal = await journal_at(client, prefix, fence, key)
    journal.accepted(task("t1", USER_KEY))
    journal.accepted(task("t2", USER_KEY, at=2))
    await journal.close()
    raw = await client.get_prefix(prefix + "/")
    assert raw.kvs and all(USER_KEY.encode() not in kv.value for kv in raw.kvs)
    stored = await records(client, prefix)
    one, two = stored["tasks/t1"]["api_key"], stored["tasks/t2"]["api_key"]
    assert isinstance(one, str) and one.startswith(SEALED) and one != two  # a nonce of its own

    again = await journal_at(client, prefix, fence, key)
    assert [t.api_key for t in again.open_tasks()] == [USER_KEY, USER_KEY]
    assert again.keys_not_kept() == set()
    await again.close()

    with pytest.raises(JournalKeyError, match="2 users' API keys") as failed:
        await journal_at(client, prefix, fence, os.urandom(32))
    assert USER_KEY not in str(failed.value)
    with pytest.raises(JournalKeyError, match="no journal key was given"):
        await journal_at(client, prefix, fence)


async def test_a_rotated_journal_key_seals_the_keys_again_with_the_new_one(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    journal = await journal_at(client, prefix, fence, old)
    journal.accepted(task("t1", USER_KEY))
    await journal.close()
    rotated = await EtcdJournal.open(client, fence, KeySealer(new, [old]), prefix + "/journal")
    assert [t.api_key for t in rotated.open_tasks()] == [USER_KEY]
    await rotated.close()
    after = await journal_at(client, prefix, fence, new)  # the old key is no longer needed
    assert [t.api_key for t in after.open_tasks()] == [USER_KEY]
    await after.close()


async def test_without_a_journal_key_the_users_key_is_not_written(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    journal = await journal_at(client, prefix, fence)
    journal.accepted(task("t1", USER_KEY))
    journal.accepted(task("t2", "", at=2))
    await journal.durable()
    stored = await records(client, prefix)
    assert stored["tasks/t1"]["api_key"] == NOT_KEPT and stored["tasks/t2"]["api_key"] is None
    assert [t.api_key for t in journal.open_tasks()] == [USER_KEY, ""]  # this run has it, in memory
    await journal.close()
    again = await journal_at(client, prefix, fence)
    assert [t.api_key for t in again.open_tasks()] == ["", ""]
    assert again.keys_not_kept() == {"t1"}
    await again.close()


async def test_the_writes_of_one_turn_are_one_transaction(client: EtcdClient, prefix: str, fence: Compare) -> None:
    journal = await journal_at(client, prefix, fence)
    before = await revision(client)
    for i in range(20):
        journal.accepted(task(f"t{i}"))
    t = task("t0")
    t.attempt, t.token, t.worker_id = 1, "tok", "w"
    journal.assigned(t)  # the same key again: its last write goes
    journal.worker_known("w", "go", None)
    await journal.durable()
    assert (journal.commits, journal.transactions) == (1, 1)
    assert await revision(client) == before + 1  # one transaction is one revision of etcd
    stored = await records(client, prefix)
    assert len(stored) == 21 and stored["tasks/t0"]["state"] == "assigned"
    await journal.close()


async def test_many_promises_awaited_in_one_turn_share_one_commit(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    journal = await journal_at(client, prefix, fence)
    await journal.durable()  # nothing written: nothing to wait for

    async def accept(task_id: str) -> int:
        journal.accepted(task(task_id))
        await journal.durable()
        return len(await records(client, prefix))

    seen = await asyncio.gather(*(accept(f"t{i}") for i in range(5)))
    assert seen == [5] * 5 and journal.transactions == 1  # each found all five: they went in together
    await journal.close()


async def test_writes_during_the_commit_floor_join_the_next_commit(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    journal = await journal_at(client, prefix, fence, commit_floor=0.2)
    journal.accepted(task("t1"))
    await journal.durable()
    started = asyncio.get_running_loop().time()
    journal.accepted(task("t2"))
    await asyncio.sleep(0.05)  # other turns, within the floor
    journal.accepted(task("t3"))
    await journal.durable()
    assert asyncio.get_running_loop().time() - started >= 0.1  # it waited for the floor
    assert journal.transactions == 2 and len(await records(client, prefix)) == 3
    await journal.close()


async def test_a_turn_past_etcds_op_limit_is_split_and_all_of_it_lands(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    journal = await journal_at(client, prefix, fence)
    before = await revision(client)
    for i in range(300):
        journal.accepted(task(f"t{i:03}", at=i))
    await journal.durable()
    assert (journal.commits, journal.transactions) == (1, 3)  # 128 + 128 + 44
    assert await revision(client) == before + 3
    await journal.close()
    again = await journal_at(client, prefix, fence)  # read back in pages of 256
    assert [t.task_id for t in again.open_tasks()] == [f"t{i:03}" for i in range(300)]
    await again.close()


async def test_a_turn_past_the_byte_limit_is_split(client: EtcdClient, prefix: str, fence: Compare) -> None:
    journal = await journal_at(client, prefix, fence, max_bytes=4000)
    for i in range(10):
        journal.accepted(Task(task_id=f"t{i}", session_id=SESSION, query="x" * 1000, submitted_ms=i))
    await journal.durable()
    assert journal.transactions == 4 and len(await records(client, prefix)) == 10  # 3 per transaction
    await journal.close()


async def test_a_deposed_leaders_writes_fail_and_a_new_leader_restores_what_the_old_one_committed(
    client: EtcdClient, prefix: str
) -> None:
    key = prefix + "/leader"
    a = Leadership(client, key, "a", ttl=TTL)
    await a.campaign()
    old = await journal_at(client, prefix, a.fence)
    old.accepted(task("t1"))
    await old.durable()
    assert a.lease is not None
    await client.lease_revoke(a.lease)  # as if paused past its lease: the key goes
    await asyncio.wait_for(a.lost.wait(), TTL)
    b = Leadership(client, key, "b", ttl=TTL)
    await b.campaign()

    old.accepted(task("t2", at=2))
    with pytest.raises(JournalError, match="no longer the leader"):
        await old.durable()
    with pytest.raises(JournalError, match="no longer the leader"):
        await old.durable()  # and from then on, whatever is pending
    assert "tasks/t2" not in await records(client, prefix)

    new = await journal_at(client, prefix, b.fence)
    assert [t.task_id for t in new.open_tasks()] == ["t1"]
    new.accepted(task("t3", at=3))
    await new.durable()
    assert set(await records(client, prefix)) == {"tasks/t1", "tasks/t3"}
    with pytest.raises(JournalError):
        await old.close()
    await new.close()
    await a.close()
    await b.resign()


async def test_a_stale_fence_refuses_every_chunk_of_a_split_turn(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    await client.delete(prefix + "/leader")
    await client.put(prefix + "/leader", "another master")
    journal = await journal_at(client, prefix, fence)
    for i in range(200):
        journal.accepted(task(f"t{i}"))
    with pytest.raises(JournalError, match="no longer the leader"):
        await journal.durable()
    assert await records(client, prefix) == {}
    assert journal.deposed is not None
    with pytest.raises(JournalError):
        await journal.close()


async def master_on(journal: EtcdJournal) -> Rig:
    """The unit tests' master rig over the etcd journal (the rig's `journal` field is typed for SQLite's)."""
    clock, publisher, sender = Clock(), RecordingPublisher(), RecordingSender()
    master = Master(MasterSettings(), publisher, sender, journal, clock)
    r = Rig(master, publisher, sender, clock, cast(Journal, journal))
    master.restore()
    await master.mqtt_up()
    return r


async def test_the_master_promises_a_question_and_a_result_only_once_they_are_in_etcd(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    journal = await journal_at(client, prefix, fence)
    r = await master_on(journal)
    task_id = await r.ask()
    assert (await records(client, prefix))[f"tasks/{task_id}"]["state"] == "queued"
    await r.worker("go-worker-a")
    accepted, _ = await r.answer(r.last_task("go-worker-a"))
    assert accepted
    assert (await records(client, prefix))[f"tasks/{task_id}"]["state"] == "answered"
    await journal.close()

    second = await journal_at(client, prefix, fence)
    after = await master_on(second)  # a new leader: the answer still waits for its user
    assert [p.task_id for p in second.pending_answers()] == [task_id]
    assert len(after.master.deliveries) == 1
    await second.close()


async def test_a_deposed_master_refuses_the_question_it_could_not_record(
    client: EtcdClient, prefix: str, fence: Compare
) -> None:
    journal = await journal_at(client, prefix, fence)
    r = await master_on(journal)
    await client.delete(prefix + "/leader")  # its leadership key went: the fence fails
    ack = await r.master.submit(SESSION, UserQuery(query="anyone there?"))
    assert not ack.accepted and "could not record your question" in (ack.error or "")
    assert await records(client, prefix) == {}
    with pytest.raises(JournalError):
        await journal.close()


async def test_a_commit_etcd_did_not_answer_fails_its_promises_without_deposing_the_journal(tmp_path: Path) -> None:
    require_etcd()
    with EtcdCluster(tmp_path / "etcd", size=1) as cluster:
        async with EtcdClient(cluster.endpoints, timeout=1.0) as c:
            epoch = await c.put("/sal-test/leader", "m1")
            journal = await journal_at(c, "/sal-test", create_revision_is("/sal-test/leader", epoch))
            (member,) = cluster.members
            cluster.kill(member)
            journal.accepted(task("lost"))
            with pytest.raises(JournalError, match="etcd"):
                await journal.durable()
            with pytest.raises(JournalError):
                await journal.durable()  # nothing pending, but the last commit failed: no promise
            assert journal.deposed is None

            cluster.restart(member)
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # the channel reconnects within its backoff (at most 1 s)
                journal.accepted(task("kept", at=2))
                try:
                    await journal.durable()
                    break
                except JournalError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)
            assert "tasks/kept" in await records(c, "/sal-test")
            await journal.close()
