"""Unit tests of the master's web edge routing: the Socket.IO client where Socket.IO's own servers offer it.

In process (Starlette's test client): no sockets, no master bound."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.master.app import CLIENT_DIST, ClientFilesFirst, WebEdge


def web_client() -> TestClient:
    return TestClient(WebEdge(lambda: "session-cccccccccccccccc", lambda: True).app)


def require_client_installed() -> None:
    if not (CLIENT_DIST / "socket.io.min.js").is_file():
        pytest.fail(f"socket.io-client is not installed in {CLIENT_DIST}: run `make setup`")


@pytest.mark.parametrize("path", ["/socket.io/socket.io.js", "/socket.io/socket.io.min.js"])
def test_the_socket_io_client_is_served_under_the_socket_io_path(path: str) -> None:
    require_client_installed()
    with web_client() as client:
        got = client.get(path)
        page_asset = client.get("/static/app.js")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/javascript")
    assert got.content == (CLIENT_DIST / "socket.io.min.js").read_bytes()
    assert got.content.rstrip().endswith(b"//# sourceMappingURL=socket.io.min.js.map")
    # Cached like the page's own assets: validators, no other policy.
    assert {"etag", "last-modified"} <= set(got.headers)
    assert got.headers.get("cache-control") == page_asset.headers.get("cache-control")


def test_the_client_source_map_is_served_next_to_it() -> None:
    require_client_installed()
    with web_client() as client:
        got = client.get("/socket.io/socket.io.min.js.map")
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
    assert json.loads(got.content)["version"] == 3


async def test_only_the_client_files_go_to_the_api_everything_else_to_socket_io() -> None:
    seen: list[tuple[str, str]] = []

    def recorder(name: str) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append((name, scope.get("path", scope["type"])))

        return app

    front = ClientFilesFirst(recorder("socketio"), recorder("api"))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        pass

    for scope in (
        {"type": "http", "path": "/socket.io/socket.io.js"},
        {"type": "http", "path": "/socket.io/socket.io.min.js.map"},
        {"type": "http", "path": "/socket.io/"},  # the Engine.IO endpoint: ?EIO=4&transport=polling
        {"type": "websocket", "path": "/socket.io/"},
        {"type": "http", "path": "/socket.io/socket.io.jsx"},
        {"type": "http", "path": "/api/status"},  # Socket.IO's app passes it on to the API itself
        {"type": "lifespan"},
    ):
        await front(scope, receive, send)
    assert seen == [
        ("api", "/socket.io/socket.io.js"),
        ("api", "/socket.io/socket.io.min.js.map"),
        ("socketio", "/socket.io/"),
        ("socketio", "/socket.io/"),
        ("socketio", "/socket.io/socket.io.jsx"),
        ("socketio", "/api/status"),
        ("socketio", "lifespan"),
    ]
