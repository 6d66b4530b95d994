"""The lab's local etcd cluster (lab/system/etcd.py) without starting it: names, ports, files, a missing binary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.system.etcd import EtcdCluster, EtcdNotFoundError, find_etcd


def test_members_get_distinct_ports_and_their_files_under_the_root(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd", size=3, host="127.0.0.1")
    ports = [p for m in cluster.members for p in (m.client_port, m.peer_port)]
    assert len(set(ports)) == 6
    assert [m.name for m in cluster.members] == ["e0", "e1", "e2"]
    assert all(m.data_dir.parent == m.log.parent == tmp_path / "etcd" for m in cluster.members)
    assert cluster.endpoints == [f"127.0.0.1:{m.client_port}" for m in cluster.members]
    assert cluster.initial_cluster == ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in cluster.members)
    assert not any(m.alive for m in cluster.members)
    cluster.stop()  # harmless before start


def test_a_missing_etcd_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(EtcdNotFoundError, match=r"etcd not found.*apt-get install etcd-server"):
        find_etcd()
    cluster = EtcdCluster(tmp_path, size=1)
    with pytest.raises(EtcdNotFoundError):
        cluster.start()
    assert cluster.members[0].process is None
