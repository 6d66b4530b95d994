"""Unit tests of standby masters' parts that need no etcd: their settings, the standby's web port, the fenced
publisher, what a master alone says of its leadership, and the epoch in the master's presence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from services.master.mqtt_edge import MqttEdge
from services.master.settings import MasterSettings
from services.master.standby import FencedPublisher, Tenure, begin, etcd_tls, master_name, standby_app
from services.protocol import MasterPresence, decode

# -- settings ----------------------------------------------------------------------------------------------------


def test_the_journal_stays_in_sqlite_unless_told() -> None:
    s = MasterSettings.from_env({})
    assert (s.journal_backend, s.standby, s.etcd_endpoints, s.etcd_lease_seconds) == ("sqlite", False, (), 5)
    assert s.etcd_prefix == "/swarm-ai-lab"


def test_etcd_settings_are_read() -> None:
    s = MasterSettings.from_env(
        {
            "JOURNAL_BACKEND": "etcd",
            "ETCD_ENDPOINTS": "etcd-1:2379, etcd-2:2379,etcd-3:2379",
            "ETCD_PREFIX": "/lab/a",
            "ETCD_LEASE_SECONDS": "7",
            "MASTER_NAME": "node-2",
        }
    )
    assert s.standby and s.etcd_endpoints == ("etcd-1:2379", "etcd-2:2379", "etcd-3:2379")
    assert (s.etcd_prefix, s.etcd_lease_seconds, master_name(s)) == ("/lab/a", 7, "node-2")
    assert etcd_tls(s) is None


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"JOURNAL_BACKEND": "etcd"}, "JOURNAL_BACKEND=etcd needs ETCD_ENDPOINTS"),
        ({"JOURNAL_BACKEND": "zookeeper"}, "JOURNAL_BACKEND must be one of sqlite, etcd"),
        ({"ETCD_ENDPOINTS": "http://etcd:2379"}, "ETCD_ENDPOINTS holds host:port items"),
        ({"ETCD_ENDPOINTS": "etcd"}, "ETCD_ENDPOINTS holds host:port items"),
        ({"ETCD_LEASE_SECONDS": "1"}, "ETCD_LEASE_SECONDS"),
        ({"ETCD_PREFIX": "no-slash"}, "ETCD_PREFIX must be a key prefix"),
    ],
)
def test_bad_etcd_settings_name_their_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        MasterSettings.from_env(env)


def test_a_client_certificate_needs_its_key_and_a_ca(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("-")
    with pytest.raises(ValueError, match="ETCD_CERT and ETCD_KEY go together"):
        MasterSettings.from_env({"ETCD_CERT": str(pem)})
    with pytest.raises(ValueError, match="ETCD_CERT needs ETCD_CA"):
        MasterSettings.from_env({"ETCD_CERT": str(pem), "ETCD_KEY": str(pem)})
    s = MasterSettings.from_env({"ETCD_CA": str(pem), "ETCD_CERT": str(pem), "ETCD_KEY": str(pem)})
    tls = etcd_tls(s)
    assert tls is not None and (tls.ca, tls.cert, tls.key) == (pem, pem, pem)


def test_a_master_without_a_name_campaigns_with_its_host_and_process() -> None:
    name = master_name(MasterSettings.from_env({}))
    assert name.rsplit("-", 1)[1].isdigit()


# -- the standby's web port --------------------------------------------------------------------------------------


def test_a_standby_is_healthy_but_never_the_leader() -> None:
    app = standby_app(MasterSettings.from_env({"MASTER_NAME": "m2"}))
    client = TestClient(app)
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["standby"] is True
    leader = client.get("/leader")
    assert leader.status_code == 503 and leader.json() == {"leading": False, "epoch": None, "name": "m2"}
    # Nothing else is served: a chat page or a status from a standby would be a wrong answer.
    assert client.get("/").status_code == 503
    assert client.get("/api/status").status_code == 503


async def test_a_master_alone_always_leads_with_no_epoch(tmp_path: Path) -> None:
    settings = MasterSettings.from_env({"JOURNAL_PATH": str(tmp_path / "j.sqlite3"), "MASTER_NAME": "solo"})
    tenure = await begin(settings, None, ())
    try:
        assert isinstance(tenure, Tenure) and tenure.epoch is None and not tenure.deposed
        assert tenure.leader_info(settings)() == {"leading": True, "epoch": None, "name": "solo"}
        assert tenure.jobs() == {}
    finally:
        await tenure.end()


# -- the fenced publisher ----------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.cleared: list[str] = []

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.sent.append(topic)

    def clear_session(self, client_id: str) -> None:
        self.cleared.append(client_id)


async def test_a_leader_that_may_be_deposed_publishes_nothing_and_says_so() -> None:
    inner, leading = Recorder(), [True]
    fenced = FencedPublisher(inner, lambda: leading[0])
    failed: list[str] = []
    fenced.publish("upb/workers/a/tasks", b"{}", on_failure=lambda: failed.append("a"))
    leading[0] = False
    fenced.publish("upb/workers/b/tasks", b"{}", on_failure=lambda: failed.append("b"))
    assert failed == []  # never from inside the call, as MqttLink
    await asyncio.sleep(0)
    assert inner.sent == ["upb/workers/a/tasks"] and failed == ["b"]
    fenced.clear_session("worker-x")
    assert inner.cleared == ["worker-x"]


# -- the epoch in the presence -----------------------------------------------------------------------------------


async def test_the_leaders_presence_and_its_will_carry_its_epoch() -> None:
    edge = MqttEdge(MasterSettings.from_env({}), epoch=42)
    client = edge._new_client()
    payload = bytes(client._client._will_payload)  # paho's: aiomqtt keeps no copy of the Will
    will = decode(MasterPresence, payload)
    assert (will.status, will.epoch) == ("offline", 42)
    alone = MqttEdge(MasterSettings.from_env({}))._new_client()
    assert "epoch" not in json.loads(alone._client._will_payload)
