"""The operator views against a real master (Mosquitto, master, a worker): /metrics and /api/status need the
operator token, the dashboard's Socket.IO connection too; the chat, its page, /healthz and /api/limits do not;
the token reaches no log; `lab load --url` and the notebooks' attach say which flag gives it."""

from __future__ import annotations

import httpx
import pytest
import socketio

from lab.loadgen.client import ChatClient
from lab.system.target import CLI_FLAGS, OperatorTokenError, attach
from tests.conftest import ClusterFactory

OPERATOR_VIEWS = ("/api/status", "/metrics")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_operator_views_need_the_token_and_the_chat_does_not(cluster_factory: ClusterFactory) -> None:
    lines: list[str] = []
    cluster = cluster_factory(
        workers=1, extra_env={"MAX_QUERY_CHARS": "120"}, log_sink=lambda name, line: lines.append(line)
    )
    token = cluster.operator_token
    async with httpx.AsyncClient(base_url=cluster.web_url, timeout=5) as http:
        for path in OPERATOR_VIEWS:
            missing = await http.get(path)
            assert missing.status_code == 401, path
            assert missing.json()["detail"].startswith("operator token required")
            assert missing.headers["www-authenticate"] == 'Bearer realm="operator"'
            wrong = await http.get(path, headers=bearer(token[::-1]))
            assert wrong.status_code == 401 and wrong.json()["detail"].startswith("operator token refused")
            assert (await http.get(path, headers=bearer(token))).status_code == 200, path
        assert (await http.get("/api/status", headers=bearer(token))).json()["max_query_chars"] == 120
        assert "swarm_queue_depth" in (await http.get("/metrics", headers=bearer(token))).text
        # Public: the pages, their files, the health check, the chat page's limits.
        for path in ("/", "/dashboard", "/static/app.js", "/static/dashboard.js", "/healthz"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/api/limits")).json()["max_query_chars"] == 120

    # The chat works without any token.
    async with ChatClient(cluster.web_url) as user:
        exchange = await user.ask("does the chat need a token?")
        await user.wait_answers(1, timeout=20)
    assert exchange.answer is not None and not exchange.answer.failed

    assert lines and not [line for line in lines if token in line or token[::-1] in line]


@pytest.mark.parametrize("given", [None, "wrong"], ids=["without", "wrong"])
async def test_a_dashboard_connection_without_the_token_is_refused(
    cluster_factory: ClusterFactory, given: str | None
) -> None:
    cluster = cluster_factory(workers=1)
    auth: dict[str, object] = {"dashboard": True} if given is None else {"dashboard": True, "token": given}
    client = socketio.AsyncClient(reconnection=False)
    errors: list[object] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(cluster.web_url, transports=["websocket"], auth=auth, wait_timeout=10)
    await client.disconnect()
    expected = "operator token required" if given is None else "operator token refused"
    (error,) = errors
    assert isinstance(error, dict) and error["message"].startswith(f"{expected}: open the URL `lab up` printed")


async def test_a_dashboard_connection_with_the_token_gets_snapshots(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1)
    client = socketio.AsyncClient(reconnection=False)
    snapshots: list[object] = []
    client.on("dashboard", snapshots.append)
    await client.connect(
        cluster.web_url,
        transports=["websocket"],
        auth={"dashboard": True, "token": cluster.operator_token},
        wait_timeout=10,
    )
    try:
        for _ in range(50):
            if snapshots:
                break
            await client.sleep(0.1)
    finally:
        await client.disconnect()
    assert snapshots, "a dashboard with the token gets snapshots"


def test_attach_names_the_token_flag_when_it_is_missing_or_wrong(
    cluster_factory: ClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = cluster_factory(workers=1)
    monkeypatch.delenv("OPERATOR_TOKEN", raising=False)
    with pytest.raises(OperatorTokenError, match=r"operator token required.*--token TOKEN"):
        attach(cluster.web_url, fixes=CLI_FLAGS)
    with pytest.raises(OperatorTokenError, match=r"operator token refused.*--token TOKEN"):
        attach(cluster.web_url, token="wrong", fixes=CLI_FLAGS)
    with pytest.raises(OperatorTokenError, match=r"token='\.\.\.'"):
        attach(cluster.web_url)
    assert attach(cluster.web_url, token=cluster.operator_token).grpc_endpoint.endswith(str(cluster.config.grpc_port))
    # The environment variable stands for the flag; the target never shows the token.
    monkeypatch.setenv("OPERATOR_TOKEN", cluster.operator_token)
    target = attach(cluster.web_url)
    assert target.status_report().workers and cluster.operator_token not in repr(target)
