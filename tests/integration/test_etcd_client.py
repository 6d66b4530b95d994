"""The etcd client and the fenced leadership against real etcd processes (Debian's etcd-server 3.4)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.master.dispatch import Task
from services.master.etcd.client import EtcdClient, EtcdTls
from services.master.etcd.election import Leadership
from services.master.etcd.errors import EtcdError, EtcdTooManyOps, EtcdUnavailable
from services.master.etcd.ops import create_revision_is, get, put
from services.master.etcd.watch import WatchEvent
from services.master.etcd_journal import EtcdJournal
from services.master.journal_records import KeySealer
from tests.etcd_cluster import EtcdCluster, Member, make_etcd_tls, require_etcd

TTL = 2  # seconds: etcd's shortest lease is 1.5 s with the default timings


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One member."""
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd1"), size=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def etcd3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """Three members; a test that kills one starts it again."""
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd3"), size=3) as cluster:
        yield cluster


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so that tests sharing a cluster never see each other's keys."""
    return f"/sal-test/{uuid.uuid4().hex[:8]}/"


@pytest.fixture
async def client1(etcd1: EtcdCluster) -> AsyncIterator[EtcdClient]:
    async with EtcdClient(etcd1.endpoints) as client:
        yield client


async def test_put_get_prefix_and_delete_round_trip(client1: EtcdClient, prefix: str) -> None:
    first = await client1.put(prefix + "a", "1")
    await client1.put(prefix + "b", b"2")
    await client1.put(prefix + "b", b"3")

    a = await client1.get(prefix + "a")
    assert a is not None and a.value == b"1" and a.create_revision == a.mod_revision == first
    snapshot = await client1.get_prefix(prefix)
    assert [(kv.key, kv.value, kv.version) for kv in snapshot.kvs] == [
        ((prefix + "a").encode(), b"1", 1),
        ((prefix + "b").encode(), b"3", 2),
    ]
    assert snapshot.revision >= snapshot.kvs[1].mod_revision
    assert await client1.delete(prefix + "a") == 1
    assert await client1.get(prefix + "a") is None
    assert await client1.delete(prefix, prefix=True) == 1
    assert (await client1.get_prefix(prefix)).kvs == ()


async def test_a_prefix_read_in_pages_is_every_key_at_the_first_pages_revision(
    client1: EtcdClient, prefix: str
) -> None:
    for i in range(5):
        await client1.put(f"{prefix}{i}", str(i))
    await client1.put(prefix[:-1] + "0", "beside the prefix")  # a key that shares the prefix's start
    whole = await client1.get_prefix(prefix)
    paged = await client1.get_prefix_paged(prefix, page=2)
    assert [kv.key for kv in paged.kvs] == [f"{prefix}{i}".encode() for i in range(5)]
    assert paged.kvs == whole.kvs and paged.revision == whole.revision


async def test_fenced_txn_succeeds_on_its_epoch_and_fails_on_a_stale_one(client1: EtcdClient, prefix: str) -> None:
    leader = prefix + "leader"
    old_epoch = await client1.put(leader, "a")
    done = await client1.txn([create_revision_is(leader, old_epoch)], [put(prefix + "task/1", "accepted")])
    assert done.succeeded and done.revision > old_epoch

    await client1.delete(leader)
    new_epoch = await client1.put(leader, "b")  # another master created the key again
    stale = await client1.txn(
        [create_revision_is(leader, old_epoch)], [put(prefix + "task/2", "accepted")], [get(leader)]
    )
    assert not stale.succeeded
    assert stale.results[0].kvs[0].create_revision == new_epoch
    assert await client1.get(prefix + "task/2") is None
    assert (await client1.txn([create_revision_is(leader, new_epoch)], [put(prefix + "task/2", "x")])).succeeded


async def test_a_txn_past_the_clusters_op_limit_is_refused_as_too_many_ops(etcd1: EtcdCluster, prefix: str) -> None:
    async with EtcdClient(etcd1.endpoints, max_txn_ops=1000) as client:  # let it reach the server's check
        with pytest.raises(EtcdTooManyOps, match="too many operations"):
            await client.txn([], [put(f"{prefix}{i}", "x") for i in range(129)])
        assert (await client.txn([], [put(f"{prefix}{i}", "x") for i in range(128)])).succeeded


async def test_lease_keys_go_with_the_revoked_lease_and_keepalive_reports_it(client1: EtcdClient, prefix: str) -> None:
    lease = await client1.lease_grant(TTL)
    await client1.put(prefix + "k", "v", lease=lease)
    lost: list[str] = []
    keepalive = client1.lease_keepalive(lease, TTL, on_lost=lost.append)
    await asyncio.sleep(TTL * 1.5)  # past its TTL: only the renewals keep it
    assert await client1.get(prefix + "k") is not None and keepalive.renewals >= 2

    await client1.lease_revoke(lease)
    await asyncio.wait_for(keepalive.lost.wait(), TTL)
    assert await client1.get(prefix + "k") is None
    assert len(lost) == 1 and "ended" in lost[0]
    await keepalive.stop()


async def test_a_paused_leader_is_replaced_with_a_higher_epoch_and_its_fenced_write_fails(
    client1: EtcdClient, prefix: str
) -> None:
    key = prefix + "leader"
    a = Leadership(client1, key, "a", ttl=TTL)
    b = Leadership(client1, key, "b", ttl=TTL)
    epoch_a = await a.campaign()
    standby = asyncio.create_task(b.campaign())
    await asyncio.sleep(TTL * 1.5)
    assert not standby.done() and a.leading  # the keepalive holds the lease past its TTL

    assert a.keepalive is not None
    await a.keepalive.stop()  # a pauses: no more renewals
    paused = time.monotonic()
    epoch_b = await asyncio.wait_for(standby, TTL + 2)
    assert epoch_b > epoch_a
    assert time.monotonic() - paused <= TTL + 1.5
    await asyncio.wait_for(a.lost.wait(), 1)  # a learns it from the key's deletion
    assert not a.leading and b.leading

    old = await client1.txn([a.fence()], [put(prefix + "task/1", "from a")])
    new = await client1.txn([b.fence()], [put(prefix + "task/1", "from b")])
    assert (old.succeeded, new.succeeded) == (False, True)
    kv = await client1.get(prefix + "task/1")
    assert kv is not None and kv.value == b"from b"
    await b.resign()
    await a.close()


async def test_the_standby_leads_within_ttl_plus_a_second_when_the_leader_is_revoked(
    client1: EtcdClient, prefix: str
) -> None:
    key = prefix + "leader"
    a = Leadership(client1, key, "a", ttl=TTL)
    b = Leadership(client1, key, "b", ttl=TTL)
    epoch_a = await a.campaign()
    standby = asyncio.create_task(b.campaign())
    await asyncio.sleep(0.3)

    killed = time.monotonic()
    assert a.lease is not None
    await client1.lease_revoke(a.lease)  # what etcd does when a's lease ends with its process
    epoch_b = await asyncio.wait_for(standby, TTL + 1)
    assert epoch_b > epoch_a and time.monotonic() - killed < TTL + 1
    await asyncio.wait_for(a.lost.wait(), 1)
    await a.close()
    await b.resign()


async def _fenced_writes(client: EtcdClient, leader: Leadership, key: str, until: float) -> list[float]:
    """Fenced writes every 20 ms until `until`; the times of those that succeeded."""
    succeeded = []
    while time.monotonic() < until:
        try:
            result = await client.txn([leader.fence()], [put(key, str(time.monotonic()))], timeout=0.5)
            assert result.succeeded, "the fence failed: the master was deposed"
            succeeded.append(time.monotonic())
        except EtcdError:
            pass
        await asyncio.sleep(0.02)
    return succeeded


async def test_killing_the_etcd_leader_does_not_depose_the_master(etcd3: EtcdCluster, prefix: str) -> None:
    etcd_leader = etcd3.leader()
    # The etcd leader first: gRPC's pick_first connects to it, so the kill also breaks the client's connection.
    endpoints = [etcd_leader.endpoint, *(m.endpoint for m in etcd3.members if m is not etcd_leader)]
    async with EtcdClient(endpoints, timeout=1.0) as client:
        leadership = Leadership(client, prefix + "leader", "master", ttl=5)  # 5 s: an etcd election blocks ~2 s
        epoch = await leadership.campaign()
        writes = asyncio.create_task(_fenced_writes(client, leadership, prefix + "task", time.monotonic() + 5))
        await asyncio.sleep(1)
        killed = time.monotonic()
        await asyncio.to_thread(etcd3.kill, etcd_leader)
        succeeded = await writes

        after = [t for t in succeeded if t > killed]
        assert after, "no write got through after the etcd leader was killed"
        assert after[0] - killed < 4, f"writes resumed {after[0] - killed:.1f} s after the kill"
        holder = await client.get(prefix + "leader")
        assert holder is not None and holder.create_revision == epoch
        assert leadership.leading
        await leadership.resign()
    await asyncio.to_thread(etcd3.restart, etcd_leader)


async def _put_until_done(client: EtcdClient, key: str, value: str) -> None:
    for _ in range(100):
        try:
            await client.put(key, value, timeout=0.5)
            return
        except EtcdError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"could not put {key}")


async def test_a_watch_resumes_after_its_stream_breaks_without_losing_or_repeating_events(
    etcd3: EtcdCluster, prefix: str
) -> None:
    watched: Member = etcd3.members[0]
    others = [m.endpoint for m in etcd3.members[1:]]
    # The watcher knows one member only, so that killing it surely breaks its stream.
    async with EtcdClient([watched.endpoint]) as watcher, EtcdClient(others) as writer:
        events: list[WatchEvent] = []
        got_first = asyncio.Event()

        async def collect() -> None:
            async for event in watcher.watch(prefix, prefix=True):
                events.append(event)
                got_first.set()
                if len(events) == 4:
                    return

        task = asyncio.create_task(collect())
        await asyncio.sleep(0.3)  # the watch is created
        await _put_until_done(writer, prefix + "1", "a")
        await asyncio.wait_for(got_first.wait(), 5)
        await asyncio.to_thread(etcd3.kill, watched)  # the watcher's stream breaks
        await _put_until_done(writer, prefix + "2", "b")  # while its member is down
        await _put_until_done(writer, prefix + "1", "c")
        await writer.delete(prefix + "2")
        await asyncio.sleep(0.5)
        assert len(events) == 1
        await asyncio.to_thread(etcd3.restart, watched)
        await asyncio.wait_for(task, 10)

    assert [(e.type, e.kv.key.decode().removeprefix(prefix), e.kv.value) for e in events] == [
        ("put", "1", b"a"),
        ("put", "2", b"b"),
        ("put", "1", b"c"),
        ("delete", "2", b""),
    ]
    assert [e.revision for e in events] == sorted({e.revision for e in events})


async def test_keepalive_reports_the_lease_lost_when_no_renewal_gets_through_for_its_ttl(tmp_path: Path) -> None:
    require_etcd()
    with EtcdCluster(tmp_path, size=1) as cluster:
        async with EtcdClient(cluster.endpoints, timeout=0.5) as client:
            lease = await client.lease_grant(TTL)
            lost: list[str] = []
            keepalive = client.lease_keepalive(lease, TTL, on_lost=lost.append)
            await asyncio.sleep(0.2)
            cut = time.monotonic()
            await asyncio.to_thread(cluster.kill, cluster.members[0])
            await asyncio.wait_for(keepalive.lost.wait(), TTL + 1)
            assert TTL - 1 < time.monotonic() - cut < TTL + 1
            assert len(lost) == 1 and f"no renewal got through for its {TTL} s" in lost[0]
            assert not keepalive.running


async def test_mutual_tls_lets_in_the_client_with_a_certificate_and_no_other(tmp_path: Path) -> None:
    require_etcd()
    tls = make_etcd_tls(tmp_path / "tls")
    with EtcdCluster(tmp_path / "etcd", size=1, tls=tls) as cluster:
        trusted = EtcdTls(ca=tls.ca, cert=tls.client_cert, key=tls.client_key)
        async with EtcdClient(cluster.endpoints, tls=trusted) as client:
            await client.put("/sal/tls", "yes")
            kv = await client.get("/sal/tls")
            assert kv is not None and kv.value == b"yes"
        async with EtcdClient(cluster.endpoints, tls=EtcdTls(ca=tls.ca), timeout=1, read_attempts=1) as anonymous:
            with pytest.raises(EtcdUnavailable):
                await anonymous.get("/sal/tls")
        async with EtcdClient(cluster.endpoints, timeout=1, read_attempts=1) as plain:
            with pytest.raises(EtcdUnavailable):
                await plain.get("/sal/tls")


async def test_a_frozen_member_costs_a_journal_commit_a_timeout_not_a_promise(etcd3: EtcdCluster, prefix: str) -> None:
    # Frozen (SIGSTOP), a member keeps its connections open and answers nothing, as a machine that died without
    # closing them (a pulled cable): the client times out, moves to the next member, and the journal sends the
    # same fenced transaction again there.
    frozen = next(m for m in etcd3.members if m is not etcd3.leader())
    endpoints = [frozen.endpoint, *(m.endpoint for m in etcd3.members if m is not frozen)]
    async with EtcdClient(endpoints, timeout=1.0) as client:
        leadership = Leadership(client, prefix + "leader", "master", ttl=5)
        await leadership.campaign()
        journal = await EtcdJournal.open(client, leadership.fence, KeySealer(None), prefix + "journal")
        assert frozen.process is not None
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            journal.accepted(Task(task_id="t1", session_id="s", query="q", submitted_ms=1))
            await journal.durable()  # a promise kept: no JournalError
            took = time.monotonic() - started
            assert client.rotations >= 1
            assert took < 4, f"the commit took {took:.1f} s"
            holder = await client.get(prefix + "journal/tasks/t1")
            assert holder is not None and json.loads(holder.value)["state"] == "queued"
            assert leadership.leading  # the lease was renewed through another member meanwhile
            await journal.close()
            await leadership.resign()
        finally:
            frozen.process.send_signal(signal.SIGCONT)


async def test_moving_to_another_member_keeps_the_lease_and_the_watch_of_the_leader(
    etcd3: EtcdCluster, prefix: str
) -> None:
    # Moving closes the old channel: the keepalive's stream and the leadership's watch on it are cancelled by
    # gRPC (CancelledError, as if their task were), and must reopen on the new channel instead of ending.
    async with EtcdClient(etcd3.endpoints, timeout=1.0) as client:
        leadership = Leadership(client, prefix + "leader", "master", ttl=3)
        await leadership.campaign()
        assert leadership.keepalive is not None
        await asyncio.sleep(1.1)  # a rotation at most once a second
        assert client.rotate("a test moves it")
        before = leadership.keepalive.renewals
        await asyncio.sleep(4)  # past the lease's ttl: only renewals on the new channel keep it
        assert leadership.keepalive.renewals > before
        assert leadership.leading and leadership.surely_leading()
        assert leadership._monitor is not None and not leadership._monitor.done()
        await client.delete(prefix + "leader")  # its watch, on the new channel, must see this
        await asyncio.wait_for(leadership.lost.wait(), 5)
        await leadership.close()
