"""The master's HTTP server (uvicorn) for the web edge's ASGI app, the same in one process or in the web front."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from services.master.settings import MasterSettings


def web_server(app: ASGIApp, settings: MasterSettings) -> uvicorn.Server:
    """The server of `app` on WEB_HOST:WEB_PORT, set for many idle users and for the limits per address."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.web_host,
            port=settings.web_port,
            log_level="warning",
            lifespan="off",
            # The client's address is the socket peer, or what TRUSTED_PROXY_HOPS says (addresses.py); uvicorn's
            # own X-Forwarded-For handling would believe any client on the master's host.
            proxy_headers=False,
            # Idle users nearly free: no per-message deflate (a compressor per connection, offered by every
            # browser, doubled an idle user's memory, and answers and statuses are short), and no WebSocket
            # pings of uvicorn's own (a timer and a frame per connection every 20 s) besides Engine.IO's, which
            # already tell a gone client.
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            ws_ping_interval=None,
        )
    )
