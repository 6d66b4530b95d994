"""The lab's local etcd cluster (lab/system/etcd.py) as `lab up --ha` uses it: its leader, one member stopped and
started again, members that outlive the thread that started them, a failed start, and a quick stop."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from lab.system.etcd import EtcdCluster
from tests.etcd_cluster import require_etcd
from tests.waiting import wait_until


def test_the_leader_is_named_and_a_stopped_member_comes_back(tmp_path: Path) -> None:
    require_etcd()
    with EtcdCluster(tmp_path, size=3) as cluster:
        assert cluster.endpoints == [f"127.0.0.1:{m.client_port}" for m in cluster.members]
        assert len(set(cluster.endpoints)) == 3
        leader = cluster.leader()
        cluster.stop_member(leader)
        assert not leader.alive
        successor = cluster.leader()  # the two others elect one
        assert successor is not leader and successor.alive
        cluster.restart(leader)
        assert leader.alive and cluster.healthy(leader)
        assert all(m.log.read_text().strip() for m in cluster.members)  # each member's log in its file
        assert all(m.data_dir.parent == tmp_path for m in cluster.members)


def test_stopping_all_members_one_at_a_time_is_quick(tmp_path: Path) -> None:
    require_etcd()
    cluster = EtcdCluster(tmp_path, size=3)
    with cluster:
        started = time.monotonic()
        cluster.stop()
        took = time.monotonic() - started
        assert not any(m.alive for m in cluster.members)
        # etcd ends itself with the SIGTERM it got, once it has shut down; none needed the SIGKILL after the grace.
        assert [m.process.returncode for m in cluster.members if m.process] == [-signal.SIGTERM] * 3
    assert took < 5, f"stopping took {took:.1f} s"  # loose: SIGTERM to all at once takes ~7 s


def test_members_outlive_the_thread_that_started_them(tmp_path: Path) -> None:
    require_etcd()
    cluster = EtcdCluster(tmp_path, size=1)
    try:
        starter = threading.Thread(target=cluster.start)  # like asyncio.to_thread's, which ends with its loop
        starter.start()
        starter.join()
        (member,) = cluster.members
        time.sleep(0.5)  # on purpose: a parent-death signal from the ended thread would have arrived by now
        assert member.alive and cluster.healthy(member)
    finally:
        cluster.stop()


def test_a_member_that_cannot_start_fails_the_start_with_its_log(tmp_path: Path) -> None:
    require_etcd()
    cluster = EtcdCluster(tmp_path, size=1)
    (member,) = cluster.members
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", member.client_port))
        taken.listen()
        with pytest.raises(RuntimeError, match="etcd member e0 exited") as failure:
            cluster.start(timeout=15)
    assert "address already in use" in str(failure.value)
    wait_until(lambda: not member.alive, "the member is gone")
