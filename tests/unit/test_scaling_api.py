"""The master's API for the autoscaler: `POST /api/scaling` (a decision goes to the log, the log topic, the Watch
stream and the metrics) and `POST /api/workers/{id}/retire` (a retired worker stays listed and is given nothing).

In process: a master with recording edges (`master_fakes`) behind the real web edge, reached over HTTP either
directly (WEB_PROCESS=false) or through the web front's `RemoteMaster` and the core's `FrontLink` over a real
socket pair (WEB_PROCESS=true)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.master import operator
from services.master.app import WebEdge
from services.master.front import RemoteMaster
from services.master.fronts import FrontLink
from services.master.link import Link
from services.master.registry import Registry, WorkerState
from services.master.scaling import decision_line
from services.master.settings import MasterSettings
from services.protocol import LogMessage, ScalingReport, StatusReport, decode, validate
from services.protocol.rpc import pb
from tests.unit.master_fakes import TOPICS, Rig, settle, started

TOKEN = "Zr8kM1x0QbJ7n4tVv2cY5eW9uHs3LpAaGq6DdFfRrTt"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DECISION: dict[str, Any] = {
    "timestamp": 1_700_000_000_000,
    "current": 3,
    "target": 5,
    "direction": "up",
    "reason": "the queue grows: 4 waiting, predicted wait 22 s against 15 s",
    "queue_length": 4,
    "busy": 3,
    "idle": 0,
    "arrival_rate_per_s": 0.4,
    "service_time_s": 10.0,
    "utilization": 0.8,
    "predicted_wait_s": 1.5,
}


@dataclass
class Served:
    """A master (`rig`) and an HTTP client of its web edge; `watched` collects its Watch stream."""

    rig: Rig
    http: httpx.AsyncClient
    watched: list[pb.Event]

    async def post(self, path: str, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.http.post(path, content=content, headers=AUTH if headers is None else headers)

    async def status(self) -> StatusReport:
        got = await self.http.get("/api/status", headers=AUTH)
        assert got.status_code == 200
        return validate(StatusReport, got.json())

    def logs(self) -> list[str]:
        return [decode(LogMessage, p.payload).message for p in self.rig.publisher.on(TOPICS.logs)]


async def watch(rig: Rig, into: list[pb.Event]) -> None:
    async for event in rig.master.events.stream([]):
        into.append(event)


@pytest.fixture(params=["one process", "web front"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    """The master's HTTP API, in its process or through a web front over the link."""
    rig = await started(operator_token=TOKEN)
    watched: list[pb.Event] = []
    tasks = [asyncio.create_task(watch(rig, watched))]
    links: list[Link] = []
    edge = WebEdge(lambda: "session-oooooooooooooooo", lambda: True)
    if request.param == "one process":
        edge.bind(rig.master)
    else:
        core_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        links = [await Link.open(core_end), await Link.open(front_end)]
        remote = RemoteMaster(MasterSettings(operator_token=TOKEN), links[1])
        edge.bind(remote)
        tasks += [
            asyncio.create_task(FrontLink().serve(links[0], rig.master, True)),
            asyncio.create_task(remote.serve(edge)),
        ]
    await settle()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge.app), base_url="http://master") as http:
        yield Served(rig, http, watched)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for link in links:
        await link.close()


# -- POST /api/scaling ----------------------------------------------------------------------------------------


async def test_a_decision_is_logged_published_watched_and_kept_in_the_metrics(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="services.master.service"):
        got = await served.post("/api/scaling", DECISION)
    assert got.status_code == 200 and got.json() == {"accepted": True}
    line = f"autoscaler: 3 -> 5 workers (up): {DECISION['reason']}"
    assert line in caplog.messages
    (published,) = [decode(LogMessage, p.payload) for p in served.rig.publisher.on(TOPICS.logs)]
    assert (published.source, published.message) == ("master", line)
    await settle()
    (event,) = [e for e in served.watched if e.kind == "scale.decision"]
    assert (event.target_workers, event.current_workers, event.reason) == (5, 3, DECISION["reason"])
    assert (event.queue_length, event.busy_workers, event.idle_workers) == (4, 3, 0)
    assert event.timestamp == served.rig.clock()  # the master's clock, as every event
    metrics = (await served.http.get("/metrics", headers=AUTH)).text
    assert "autoscaler_target_workers 5.0" in metrics and "autoscaler_current_workers 3.0" in metrics
    assert 'autoscaler_decisions_total{direction="up"} 1.0' in metrics


async def test_the_metrics_keep_the_last_decision_and_count_each_direction(served: Served) -> None:
    down = dict(DECISION, current=5, target=2, direction="down", reason="quiet")
    hold = dict(DECISION, current=2, target=2, direction="hold", reason="in the band")
    for body in (DECISION, down, hold, hold):
        assert (await served.post("/api/scaling", body)).status_code == 200
    metrics = (await served.http.get("/metrics", headers=AUTH)).text
    assert "autoscaler_target_workers 2.0" in metrics and "autoscaler_current_workers 2.0" in metrics
    for direction, count in (("up", 1), ("down", 1), ("hold", 2)):
        assert f'autoscaler_decisions_total{{direction="{direction}"}} {count}.0' in metrics
    # The status shows the last decision (for `lab load`'s live view).
    shown = (await served.status()).scaling
    assert shown is not None and (shown.current, shown.target, shown.reason) == (2, 2, "in the band")


async def test_a_master_without_decisions_shows_no_autoscaler_target(served: Served) -> None:
    metrics = (await served.http.get("/metrics", headers=AUTH)).text
    assert "swarm_queue_depth" in metrics  # the metrics are there...
    assert "autoscaler_target_workers " not in metrics and "autoscaler_current_workers " not in metrics
    assert "autoscaler_decisions_total{" not in metrics  # ...but no target of 0 and no decision
    raw = (await served.http.get("/api/status", headers=AUTH)).json()
    assert "scaling" not in raw  # the status is the baseline's


BAD_BODIES: list[tuple[str, bytes | object, str]] = [
    ("not JSON", b"{current: 3", "not JSON"),
    ("not UTF-8", b"\xff\xfe", "not JSON"),
    ("an array", [DECISION], "expected a JSON object"),
    ("no target", {k: v for k, v in DECISION.items() if k != "target"}, "target"),
    ("a negative count", dict(DECISION, busy=-1), "busy"),
    ("a count as text", dict(DECISION, queue_length="four"), "queue_length"),
    ("an unknown direction", dict(DECISION, direction="sideways"), "direction"),
    ("a direction against the change", dict(DECISION, direction="down"), "does not match 3 -> 5"),
    ("hold with a change", dict(DECISION, direction="hold"), "does not match 3 -> 5"),
    ("a reason too long", dict(DECISION, reason="x" * 501), "reason"),
    ("a negative rate", dict(DECISION, arrival_rate_per_s=-0.1), "arrival_rate_per_s"),
    # The other fields right (JSON keeps the last of a repeated key), so that the NaN is what is refused.
    ("a NaN utilization", json.dumps(DECISION)[:-1].encode() + b', "utilization": NaN}', "utilization"),
    ("an infinite wait", json.dumps(dict(DECISION, predicted_wait_s=float("inf"))).encode(), "predicted_wait_s"),
    ("a huge body", json.dumps(dict(DECISION, padding="x" * 20_000)).encode(), "over 16384 bytes"),
]


@pytest.mark.parametrize(("body", "says"), [(b, s) for _, b, s in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES])
async def test_a_bad_decision_is_a_400_that_says_why_and_changes_nothing(
    served: Served, body: bytes | object, says: str
) -> None:
    got = await served.post("/api/scaling", body)
    assert got.status_code == 400, got.text
    assert got.json()["detail"].startswith("invalid scaling report") and says in got.json()["detail"]
    await settle()
    assert served.logs() == [] and not [e for e in served.watched if e.kind == "scale.decision"]
    metrics = (await served.http.get("/metrics", headers=AUTH)).text
    assert "autoscaler_target_workers " not in metrics and "autoscaler_decisions_total{" not in metrics


def test_a_reason_cannot_forge_log_lines() -> None:
    report = ScalingReport.model_validate(dict(DECISION, reason="fine\nmaster: worker x went offline\r\x1b[2J"))
    line = decision_line(report)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "autoscaler: 3 -> 5 workers (up): fine master: worker x went offline [2J"


# -- the operator token ---------------------------------------------------------------------------------------

ROUTES = ("/api/scaling", "/api/workers/go-worker-a/retire")


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}"])
async def test_the_autoscaler_api_needs_the_operator_token(served: Served, path: str, header: str | None) -> None:
    await served.rig.worker("go-worker-a")
    got = await served.post(path, DECISION, headers={} if header is None else {"Authorization": header})
    assert got.status_code == 401 and got.json()["detail"] in (operator.MISSING, operator.WRONG)
    assert got.headers["www-authenticate"] == operator.CHALLENGE
    assert TOKEN not in got.text
    assert served.logs() == ["worker go-worker-a (go) registered"]  # neither decided nor retired
    assert not served.rig.master.dispatcher.registry.get("go-worker-a").retired  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ROUTES)
async def test_a_master_without_a_token_has_no_autoscaler_api(path: str) -> None:
    rig = await started(operator_token=None)
    edge = WebEdge(lambda: "session-oooooooooooooooo", lambda: True)
    edge.bind(rig.master)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge.app), base_url="http://master") as http:
        got = await http.post(path, json=DECISION, headers={"Authorization": "Bearer anything"})
    assert got.status_code == 403 and got.json() == {"detail": operator.NOT_CONFIGURED}


# -- POST /api/workers/{id}/retire ----------------------------------------------------------------------------


async def test_a_retired_idle_worker_stays_listed_and_gets_no_more_tasks(served: Served) -> None:
    rig = served.rig
    await rig.worker("go-worker-a")
    await rig.worker("go-worker-b")
    got = await served.post("/api/workers/go-worker-a/retire")
    assert got.status_code == 200 and got.json() == {"retired": True, "idle": True}
    assert "worker go-worker-a retired (idle): no more tasks for it" in served.logs()
    for i in range(5):
        await rig.ask(f"question {i}")
        task = rig.last_task()
        assert task.worker_id == "go-worker-b"
        assert (await rig.answer(task))[0]
    assert rig.publisher.tasks("go-worker-a") == []
    assert len(rig.publisher.tasks("go-worker-b")) == 5
    status = await served.status()
    by_id = {w.worker_id: w for w in status.workers}
    assert by_id["go-worker-a"].state == "idle" and by_id["go-worker-a"].retired
    assert not by_id["go-worker-b"].retired
    raw = (await served.http.get("/api/status", headers=AUTH)).json()
    assert [w.get("retired") for w in raw["workers"]] == [True, None]  # only where true: the baseline's shape else


async def test_a_retired_busy_worker_finishes_its_task_and_gets_no_new_one(served: Served) -> None:
    rig = served.rig
    await rig.worker("go-worker-a")
    await rig.ask("first")
    first = rig.last_task("go-worker-a")
    got = await served.post("/api/workers/go-worker-a/retire")
    assert got.status_code == 200 and got.json() == {"retired": True, "idle": False}
    await rig.ask("second")  # waits: the only worker is retired
    assert (await rig.answer(first))[0]  # its task still counts
    assert len(rig.publisher.tasks("go-worker-a")) == 1
    assert rig.master.dispatcher.queue_length == 1
    await rig.worker("go-worker-b")  # a new worker takes what waits
    assert rig.last_task("go-worker-b").query == "second"
    assert len(rig.publisher.tasks("go-worker-a")) == 1


async def test_retiring_an_unknown_worker_is_a_404(served: Served) -> None:
    await served.rig.worker("go-worker-a")
    got = await served.post("/api/workers/go-worker-zz/retire")
    assert got.status_code == 404 and "go-worker-zz" in got.json()["detail"]
    assert not served.rig.master.dispatcher.registry.get("go-worker-a").retired  # type: ignore[union-attr]


async def test_retiring_twice_says_the_same(served: Served) -> None:
    await served.rig.worker("go-worker-a")
    for _ in range(2):
        got = await served.post("/api/workers/go-worker-a/retire")
        assert got.json() == {"retired": True, "idle": True}


# -- when the mark ends ---------------------------------------------------------------------------------------


async def test_a_retired_worker_that_registers_again_takes_tasks_again() -> None:
    rig = await started()
    await rig.worker("go-worker-a")
    assert await rig.master.retire_worker("go-worker-a") is True
    await rig.ask("waits")
    assert rig.publisher.tasks() == []
    await rig.worker("go-worker-a")  # it registers again (a reconnect): no longer retired
    assert rig.last_task("go-worker-a").query == "waits"
    assert not rig.master.status().workers[0].retired


async def test_a_retired_worker_that_goes_offline_and_comes_back_takes_tasks_again() -> None:
    rig = await started()
    await rig.worker("go-worker-a")
    await rig.master.retire_worker("go-worker-a")
    await rig.status("go-worker-a", "offline")
    await rig.ask("waits")
    await rig.status("go-worker-a", "idle")  # back without registering (the master admits it)
    assert rig.last_task("go-worker-a").query == "waits"


def test_the_registry_never_offers_a_retired_worker() -> None:
    registry = Registry()
    for worker_id in ("a", "b", "c"):
        registry.mark_idle(registry.upsert(worker_id, "go", 0), 0)
    assert registry.retire("a") is registry.get("a")
    assert registry.retire("nobody") is None
    assert registry.take_longest_idle() is registry.get("b")
    b = registry.get("b")
    assert b is not None
    registry.mark_busy(b, "t1", 1)
    registry.retire("b")
    registry.mark_idle(b, 2)  # its task done: idle, still not offered
    assert registry.take_longest_idle() is registry.get("c")
    registry.retire("c")
    assert registry.take_longest_idle() is None
    assert registry.count(WorkerState.IDLE) == 3 and len(registry) == 3  # listed and counted as they are
    registry.upsert("b", "go", 3)  # registers again: at the back of the idle order
    assert registry.take_longest_idle() is b and not b.retired
