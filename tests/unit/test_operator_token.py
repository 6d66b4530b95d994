"""Unit tests of the operator views' token: the check itself, /metrics and /api/status over HTTP, the dashboard's
Socket.IO connection, and the public /api/limits the chat page reads.

In process: a master with recording edges (`master_fakes`), Starlette's test client; no sockets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import socketio
from starlette.testclient import TestClient

from services.master import operator
from services.master.app import WebEdge
from services.master.operator import bearer_token, check, dashboard_refusal, same_token
from services.master.settings import MasterSettings
from tests.unit.master_fakes import rig

TOKEN = "Zr8kM1x0QbJ7n4tVv2cY5eW9uHs3LpAaGq6DdFfRrTt"
OPERATOR_VIEWS = ("/api/status", "/metrics")
PUBLIC = ("/", "/healthz", "/dashboard", "/static/app.js", "/static/dashboard.js", "/api/limits")


def client(token: str | None = TOKEN, **settings: Any) -> TestClient:
    edge = WebEdge(lambda: "session-oooooooooooooooo", lambda: True)
    edge.bind(rig(operator_token=token, **settings).master)
    return TestClient(edge.app)


# -- the check ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
    ],
)
def test_only_a_bearer_header_carries_a_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_the_right_token_passes_and_a_missing_or_wrong_one_is_a_401() -> None:
    assert check(TOKEN, TOKEN) is None
    missing, wrong = check(TOKEN, None), check(TOKEN, TOKEN[:-1] + "x")
    assert missing is not None and missing.status == 401 and missing.message == operator.MISSING
    assert wrong is not None and wrong.status == 401 and wrong.message == operator.WRONG
    assert check(TOKEN, "") == missing
    assert check(TOKEN, TOKEN + "x") == wrong and check(TOKEN, TOKEN.lower()) == wrong


@pytest.mark.parametrize("configured", [None, ""])
def test_a_master_without_a_token_refuses_every_operator_request_naming_the_setting(configured: str | None) -> None:
    for presented in (None, "", "anything"):
        refused = check(configured, presented)
        assert refused is not None and refused.status == 403
        assert "OPERATOR_TOKEN" in refused.message


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr("services.master.operator.hmac.compare_digest", compare_digest)
    assert same_token(TOKEN, TOKEN) and not same_token("x", TOKEN)
    assert compared == [(TOKEN.encode(), TOKEN.encode()), (b"x", TOKEN.encode())]


@pytest.mark.parametrize("presented", [None, "", "wrong", TOKEN + " "])
def test_no_refusal_repeats_what_was_presented_or_the_token(presented: str | None) -> None:
    refused = check(TOKEN, presented)
    assert refused is not None
    assert TOKEN not in refused.message and (not presented or presented.strip() not in refused.message)


def test_the_dashboard_needs_auth_with_the_token() -> None:
    assert dashboard_refusal(TOKEN, {"dashboard": True, "token": TOKEN}) is None
    for auth in ({"dashboard": True}, {"dashboard": True, "token": ""}, {"dashboard": True, "token": 1}, None):
        refused = dashboard_refusal(TOKEN, auth)
        assert refused is not None and refused.startswith("operator token required: open the URL `lab up` printed")
    wrong = dashboard_refusal(TOKEN, {"dashboard": True, "token": "nope"})
    assert wrong is not None and wrong.startswith("operator token refused")
    off = dashboard_refusal(None, {"dashboard": True, "token": TOKEN})
    assert off is not None and "OPERATOR_TOKEN" in off


def test_the_token_is_not_in_the_settings_repr() -> None:
    settings = MasterSettings.from_env({"OPERATOR_TOKEN": TOKEN})
    assert settings.operator_token == TOKEN and TOKEN not in repr(settings)


# -- over HTTP ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", OPERATOR_VIEWS)
def test_an_operator_view_without_the_token_is_a_401_that_says_how(path: str) -> None:
    with client() as c:
        got = c.get(path)
    assert got.status_code == 401
    assert got.json() == {"detail": operator.MISSING}
    assert got.headers["www-authenticate"] == 'Bearer realm="operator"'


@pytest.mark.parametrize("path", OPERATOR_VIEWS)
@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", "Bearer nope", f"Basic {TOKEN}", TOKEN])
def test_an_operator_view_with_a_wrong_token_is_a_401(path: str, header: str) -> None:
    with client() as c:
        got = c.get(path, headers={"Authorization": header})
    assert got.status_code == 401 and got.json()["detail"] in (operator.WRONG, operator.MISSING)
    assert TOKEN not in got.text


def test_the_operator_views_answer_with_the_token() -> None:
    with client() as c:
        status = c.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        metrics = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status.status_code == 200 and status.json()["max_query_chars"] == 8000
    assert metrics.status_code == 200 and "swarm_" in metrics.text


@pytest.mark.parametrize("path", OPERATOR_VIEWS)
def test_a_master_without_a_token_serves_no_operator_view(path: str) -> None:
    with client(token=None) as c:
        got = c.get(path, headers={"Authorization": "Bearer anything"})
    assert got.status_code == 403 and got.json() == {"detail": operator.NOT_CONFIGURED}


@pytest.mark.parametrize("path", PUBLIC)
def test_the_pages_health_and_limits_stay_public(path: str) -> None:
    with client() as c:
        assert c.get(path).status_code == 200


def test_the_chat_page_learns_its_limits_without_a_token() -> None:
    with client(max_query_chars=100) as c:
        got = c.get("/api/limits")
    assert got.json() == {"max_query_chars": 100, "rate_per_minute": 30, "max_in_flight_per_session": 10}


def test_a_refused_request_logs_no_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client() as c:
        c.get("/metrics", headers={"Authorization": "Bearer the-wrong-one-XYZ"})
        c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert "the-wrong-one-XYZ" not in caplog.text and TOKEN not in caplog.text


# -- the dashboard's Socket.IO connection ---------------------------------------------------------------------


async def connect_dashboard(auth: object, token: str | None = TOKEN) -> WebEdge:
    edge = WebEdge(lambda: "session-pppppppppppppppp", lambda: True)
    edge.bind(rig(operator_token=token).master)

    async def emit(*args: object, **kwargs: object) -> None:
        return None

    edge.sio.emit = emit
    sid = await edge.sio.manager.connect("eio-1", "/")
    try:
        await edge.sio.handlers["/"]["connect"](sid, {}, auth)
    finally:
        if edge._dashboard_loop is not None:
            edge._dashboard_loop.cancel()
    return edge


@pytest.mark.parametrize("auth", [{"dashboard": True}, {"dashboard": True, "token": "wrong"}], ids=["none", "wrong"])
async def test_a_dashboard_without_the_token_is_refused_with_what_the_page_shows(auth: object) -> None:
    with pytest.raises(socketio.exceptions.ConnectionRefusedError) as refused:
        await connect_dashboard(auth)
    assert "open the URL `lab up` printed" in str(refused.value.error_args)
    assert "wrong" not in str(refused.value.error_args)


async def test_a_dashboard_with_the_token_joins() -> None:
    edge = await connect_dashboard({"dashboard": True, "token": TOKEN})
    assert edge.dashboards == 1


async def test_the_chat_connects_without_a_token() -> None:
    edge = await connect_dashboard({"sessionId": "session-pppppppppppppppp"})
    assert edge.dashboards == 0 and edge._sessions
