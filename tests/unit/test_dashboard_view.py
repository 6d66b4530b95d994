"""Unit tests of the dashboard's server side: the recent answers' recorder, the snapshot view, the dashboard's
Socket.IO connection (no session, snapshots only while one is open), its page and vendor files, and the gRPC
endpoint in the REST status.

In process: a master with recording edges (`master_fakes`), Starlette's test client; no sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.master.app import DASHBOARD_ROOM, VENDOR_FILES, WebEdge
from services.master.recent import WINDOW_S, Point, RecentAnswers, percentile
from services.master.views import dashboard_snapshot
from services.protocol import DashboardSnapshot, Events, UserQuery, validate
from tests.unit.master_fakes import SESSION, START_MS, Rig, rig

SECRET_KEY = "AIza-dashboard-unit-SECRET-91b2"
QUESTION = "Which question must never reach the dashboard?"
T0 = 1_700_000_000_000  # a whole second
OPERATOR_TOKEN = "operator-token-of-the-dashboard-unit-tests"


# -- the recorder -------------------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50, 95, 100)
    assert (percentile([7], 50), percentile([7], 95)) == (7, 7)
    assert (percentile([10, 20], 50), percentile([10, 20], 95)) == (10, 20)


def test_the_series_has_a_point_per_complete_second_with_counts_and_latency_percentiles() -> None:
    recent = RecentAnswers(window_s=5)
    for offset, latency in [(100, 400), (200, 600), (900, 800), (2_500, 1_000)]:
        recent.add(T0 + offset, latency)
    recent.add(T0 + 3_100, 5)  # in the second still under way: not a point yet

    points = recent.series(T0 + 3_200)

    assert points == [
        Point(T0 - 2_000, 0, None, None),
        Point(T0 - 1_000, 0, None, None),
        Point(T0, 3, 600, 800),
        Point(T0 + 1_000, 0, None, None),
        Point(T0 + 2_000, 1, 1_000, 1_000),
    ]
    # The next second completes: one point more, the oldest one out of the window; the last answer counted once.
    later = recent.series(T0 + 4_000)
    assert later[-1] == Point(T0 + 3_000, 1, 5, 5)
    assert later[:-1] == points[1:]
    assert recent.series(T0 + 4_500) == later  # within the same second: nothing new


def test_the_series_covers_the_window_at_most_and_skips_what_it_missed() -> None:
    recent = RecentAnswers()
    recent.add(T0 + 10, 100)
    first = recent.series(T0 + 1_000)
    assert len(first) == WINDOW_S and first[-1] == Point(T0, 1, 100, 100)
    # Nobody asked for ten minutes (no dashboard open): the window is rebuilt from the answers kept.
    recent.add(T0 + 599_000, 300)
    later = recent.series(T0 + 600_000)
    assert len(later) == WINDOW_S
    assert later[0].start_ms == T0 + 300_000 and later[-1] == Point(T0 + 599_000, 1, 300, 300)
    assert sum(p.answers for p in later) == 1


def test_the_series_starts_when_the_recorder_started() -> None:
    recent = RecentAnswers(started_ms=T0 + 1_500)
    recent.add(T0 + 2_100, 50)
    assert recent.series(T0 + 3_000) == [Point(T0 + 1_000, 0, None, None), Point(T0 + 2_000, 1, 50, 50)]


def test_the_recorder_keeps_a_bounded_number_of_answers() -> None:
    recent = RecentAnswers(capacity=10)
    for i in range(25):
        recent.add(T0 + i, i)
    assert sum(p.answers for p in recent.series(T0 + 1_000)) == 10  # the 10 latest


def test_the_summary_takes_percentiles_of_the_answers_not_of_the_seconds() -> None:
    recent = RecentAnswers()
    recent.add(T0 - 61_000, 1)  # older than a minute: left out
    for latency in (100, 100, 100):  # second 1: three quick answers
        recent.add(T0 + 100, latency)
    recent.add(T0 + 1_100, 9_000)  # second 2: one slow answer
    summary = recent.summary(T0 + 2_500, 60)
    assert summary == Point(T0 + 2_000 - 60_000, 4, 100, 9_000)
    assert recent.summary(T0 + 2_500, 1) == Point(T0 + 1_000, 1, 9_000, 9_000)


# -- the snapshot -------------------------------------------------------------------------------------------


async def started(**settings: Any) -> Rig:
    r = rig(**settings)
    await r.master.mqtt_up()
    return r


async def test_the_snapshot_shows_workers_tasks_queue_and_answers_but_no_question_session_or_key() -> None:
    r = await started()
    await r.worker("go-worker-a")
    await r.worker("go-worker-b")
    r.clock.advance(1_000)
    first = await r.ask(QUESTION)
    task = r.last_task()
    r.clock.advance(2_500)
    await r.status("go-worker-a", "busy", task)
    await r.status("go-worker-b", "offline")

    snapshot = r.master.dashboard()

    assert snapshot.timestamp == r.clock()
    by_id = {w.workerId: w for w in snapshot.workers}
    busy = by_id[task.worker_id]
    assert (busy.state, busy.taskId, busy.taskMs, busy.language) == ("busy", first, 2_500, "go")
    assert (busy.tasksDone, busy.tasksFailed, busy.lastSeen) == (0, 0, r.clock())
    assert by_id["go-worker-b"].state == "offline" and by_id["go-worker-b"].taskId is None
    assert (snapshot.idle, snapshot.busy, snapshot.offline, snapshot.lost) == (0, 1, 1, 0)
    assert (snapshot.queued, snapshot.inFlight) == (0, 1)

    # A second question waits (nobody idle); the first is answered 4 s after it was asked.
    r.master.deliveries.expects_acks(SESSION)
    await r.master.submit(SESSION, UserQuery(query=QUESTION + " again", apiKey=SECRET_KEY))
    r.clock.advance(1_500)
    assert (await r.answer(task))[0]
    r.clock.advance(1_000)
    after = r.master.dashboard()
    assert sum(after.series.answers) == 1
    assert (after.series.answers[-1], after.series.p50[-1], after.series.p95[-1]) == (1, 4_000, 4_000)
    assert (after.lastMinute.answers, after.lastMinute.p50, after.lastMinute.p95) == (1, 4_000, 4_000)
    # One point per second since the master started, up to the last complete second.
    assert len(after.series.answers) == len(after.series.p50) == len(after.series.p95) == 6
    assert (after.series.start, after.series.stepMs) == (START_MS, 1_000)
    worker = next(w for w in after.workers if w.workerId == task.worker_id)
    assert worker.tasksDone == 1 and worker.state == "busy"  # it took the waiting question at once
    assert (after.queued, after.inFlight) == (0, 1)

    wire = json.dumps(after.dump())
    assert task.token
    for secret in (QUESTION, SESSION, SECRET_KEY, task.token):
        assert secret not in wire
    assert validate(DashboardSnapshot, json.loads(wire)) == after


def test_a_snapshot_without_workers_or_answers_is_empty_but_whole() -> None:
    r = rig()
    snapshot = dashboard_snapshot(r.master.dispatcher, [], Point(0, 0, None, None), START_MS)
    assert snapshot.dump() == {
        "timestamp": START_MS,
        "workers": [],
        "idle": 0,
        "busy": 0,
        "offline": 0,
        "lost": 0,
        "queued": 0,
        "inFlight": 0,
        "series": {"start": 0, "stepMs": 1000, "answers": [], "p50": [], "p95": []},
        "lastMinute": {"seconds": 60, "answers": 0, "p50": None, "p95": None},
    }


# -- the REST status --------------------------------------------------------------------------------------


def test_the_status_names_the_grpc_endpoint_workers_call_back() -> None:
    assert rig(grpc_endpoint="master.swarm:50051").master.status().grpc_endpoint == "master.swarm:50051"
    assert rig(grpc_port=50123).master.status().grpc_endpoint == "127.0.0.1:50123"
    assert rig().master.status().dump()["grpc_endpoint"] == "127.0.0.1:50051"


# -- the dashboard's connection -----------------------------------------------------------------------------


async def test_a_dashboard_gets_snapshots_and_no_session_and_none_are_built_without_one() -> None:
    r = await started(operator_token=OPERATOR_TOKEN)
    await r.worker("go-worker-a")
    edge = WebEdge(lambda: "session-dddddddddddddddd", lambda: True)
    edge.bind(r.master)
    emitted: list[tuple[str, object, str | None]] = []

    async def emit(event: str, data: object = None, to: str | None = None, **kwargs: Any) -> None:
        emitted.append((event, data, to))

    edge.sio.emit = emit
    handlers = edge.sio.handlers["/"]
    assert not edge.dashboards_updating  # nothing runs before a dashboard comes

    sid = await edge.sio.manager.connect("eio-1", "/")
    await handlers["connect"](sid, {}, {"dashboard": True, "token": OPERATOR_TOKEN})
    await asyncio.sleep(0.05)  # the loop's first snapshot goes out at once

    assert edge.dashboards == 1 and edge.dashboards_updating
    assert [(event, to) for event, _, to in emitted] == [(Events.DASHBOARD, DASHBOARD_ROOM)]
    assert validate(DashboardSnapshot, emitted[0][1]).workers[0].workerId == "go-worker-a"
    assert sid in dict(edge.sio.manager.get_participants("/", DASHBOARD_ROOM))
    assert edge._sessions == {} and edge._members == {}  # not a chat session: no id, no room of one

    # A second dashboard gets a snapshot at once, from the same loop.
    other = await edge.sio.manager.connect("eio-2", "/")
    await handlers["connect"](other, {}, {"dashboard": True, "token": OPERATOR_TOKEN})
    assert emitted[-1][0] == Events.DASHBOARD and emitted[-1][2] == other

    await handlers["disconnect"](sid)
    assert edge.dashboards_updating
    await handlers["disconnect"](other)
    assert edge.dashboards == 0 and not edge.dashboards_updating


@pytest.mark.parametrize("auth", [None, {}, {"dashboard": "yes"}, {"dashboard": 1}, ["dashboard"]], ids=str)
async def test_only_auth_dashboard_true_makes_a_dashboard(auth: object) -> None:
    r = await started()
    edge = WebEdge(lambda: "session-eeeeeeeeeeeeeeee", lambda: True)
    edge.bind(r.master)
    events: list[str] = []

    async def emit(event: str, data: object = None, to: str | None = None, **kwargs: Any) -> None:
        events.append(event)

    edge.sio.emit = emit
    sid = await edge.sio.manager.connect("eio-1", "/")
    await edge.sio.handlers["/"]["connect"](sid, {}, auth)
    assert edge.dashboards == 0 and not edge.dashboards_updating
    assert events[:2] == [Events.SESSION_ID, Events.STATUS]


# -- the page and its vendor files ----------------------------------------------------------------------------


def web_client() -> TestClient:
    return TestClient(WebEdge(lambda: "session-cccccccccccccccc", lambda: True).app)


@pytest.mark.parametrize("name", ["socket.io.min.js", "chart.umd.min.js", "marked.umd.js", "purify.min.js"])
def test_each_vendor_script_is_served_at_its_name(name: str) -> None:
    file = VENDOR_FILES[name]
    if not file.is_file():
        pytest.fail(f"{file} is missing: run `make setup`")
    with web_client() as client:
        got = client.get(f"/vendor/{name}")
        source_map = client.get(f"/vendor/{name}.map")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/javascript")
    assert got.content == file.read_bytes()
    assert {"etag", "last-modified"} <= set(got.headers)
    assert source_map.status_code == 200 and json.loads(source_map.content)["version"] == 3


@pytest.mark.parametrize(
    "path",
    ["/vendor/chart.js", "/vendor/package.json", "/vendor/..%2Fpackage.json", "/vendor/chart.js%2Fdist%2Fchart.js"],
)
def test_nothing_else_is_served_under_vendor(path: str) -> None:
    with web_client() as client:
        assert client.get(path).status_code == 404


def test_a_missing_vendor_file_says_to_run_make_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(VENDOR_FILES, "chart.umd.min.js", tmp_path / "chart.umd.min.js")
    with web_client() as client:
        got = client.get("/vendor/chart.umd.min.js")
    assert got.status_code == 404 and "make setup" in got.json()["detail"]


def test_the_dashboard_page_and_its_assets_are_served() -> None:
    with web_client() as client:
        page = client.get("/dashboard")
        script = client.get("/static/dashboard.js")
        style = client.get("/static/dashboard.css")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for src in (
        "/vendor/socket.io.min.js",
        "/vendor/chart.umd.min.js",
        "/static/dashboard.js",
        "/static/dashboard.css",
    ):
        assert src in page.text
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
