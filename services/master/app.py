"""The master's web edge: FastAPI (chat page, dashboard, status, health, metrics, the autoscaler's API) with
Socket.IO mounted.

Socket.IO payloads are read into and written from the models of `services.protocol`."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import socketio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.master.addresses import Connections, client_address, connection_cap
from services.master.face import MasterFace
from services.master.intake import refusal
from services.master.loops import tell_dashboards
from services.master.operator import CHALLENGE, bearer_token, check, dashboard_refusal
from services.master.scaling_api import autoscaler_routes
from services.protocol import (
    DASHBOARD_AUTH_KEY,
    DashboardSnapshot,
    DecodeError,
    Events,
    Payload,
    QueryAck,
    StatusReport,
    UserQuery,
    validate,
)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
NODE_MODULES = WEB_DIR / "node_modules"
CLIENT_DIST = NODE_MODULES / "socket.io-client" / "dist"
CLIENT_JS = CLIENT_DIST / "socket.io.min.js"
# The pages' third-party scripts (services/web/package.json), served at /vendor/<name>: name -> file. Only these:
# nothing else under node_modules is reachable. Each ends with `sourceMappingURL=<name>.map`, which a browser's
# developer tools ask for next to it, so the maps are listed too.
VENDOR_FILES = {
    "socket.io.min.js": CLIENT_JS,
    "chart.umd.min.js": NODE_MODULES / "chart.js" / "dist" / "chart.umd.min.js",
    "marked.umd.js": NODE_MODULES / "marked" / "lib" / "marked.umd.js",
    "purify.min.js": NODE_MODULES / "dompurify" / "dist" / "purify.min.js",
}
VENDOR_FILES |= {f"{name}.map": file.with_name(f"{file.name}.map") for name, file in VENDOR_FILES.items()}
# The Socket.IO client where Socket.IO's own servers offer it, and where the original page loads it from:
# path -> (file in CLIENT_DIST, content type). The minified build ends with `sourceMappingURL=socket.io.min.js.map`,
# which a browser's developer tools ask for next to the script.
CLIENT_FILES = {
    "/socket.io/socket.io.js": ("socket.io.min.js", "text/javascript"),
    "/socket.io/socket.io.min.js": ("socket.io.min.js", "text/javascript"),
    "/socket.io/socket.io.min.js.map": ("socket.io.min.js.map", "application/json"),
}
CLIENT_FILES_PATH = "/socket.io/{name}"  # the API's route for them (ClientFilesFirst lets only them reach it)
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# What a `user-query` must look like, told to a client that sent something else.
QUERY_SHAPE = "send {query: string, apiKey?: string}"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
# The Socket.IO room of the dashboards' connections. Not a session id (those are 16 to 64 characters), so no
# answer or task event addressed to a session can reach a dashboard.
DASHBOARD_ROOM = "dashboard"


# Whether the event being handled asked for an acknowledgement (its packet has an id). Set by AckAwareServer
# around each handler: a handler's return value is sent only when one was asked for.
ACK_REQUESTED: contextvars.ContextVar[bool] = contextvars.ContextVar("ack_requested", default=True)


class AckAwareServer(socketio.AsyncServer):  # type: ignore[misc]
    """A Socket.IO server whose event handlers can tell whether the client asked for an acknowledgement.

    python-socketio has no public way to ask, so this overrides `_handle_event_internal` (python-socketio 5),
    which gets the packet's ack id and runs the handler in its own task."""

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: int | None
    ) -> None:
        ACK_REQUESTED.set(id is not None)
        await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)


def query_text(data: object) -> str:
    """The question as sent, as far as there is one (to echo in a refusal)."""
    text = data.get("query") if isinstance(data, dict) else None
    return text if isinstance(text, str) else ""


class OriginPolicy:
    """Lets a Socket.IO client connect from the page's own origin or one of the configured ones."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self._allowed = frozenset(o.rstrip("/") for o in allowed)

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True  # not a browser: nothing to check
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin == own or origin.rstrip("/") in self._allowed


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def is_dashboard(auth: object) -> bool:
    """Whether a connection's auth says it is a dashboard (`{dashboard: true}`)."""
    return isinstance(auth, dict) and auth.get(DASHBOARD_AUTH_KEY) is True


def serve_vendor_file(name: str) -> FileResponse:
    """One of VENDOR_FILES, cached like the page's other assets (validators, no other policy)."""
    file = VENDOR_FILES.get(name)
    if file is None:
        raise HTTPException(404)
    if not file.is_file():
        raise HTTPException(404, f"/vendor/{name} is not here: are the page's npm packages installed? (`make setup`)")
    return FileResponse(file, media_type="application/json" if name.endswith(".map") else "text/javascript")


def serve_client_file(path: str) -> FileResponse:
    """One of CLIENT_FILES, cached like the page's other assets (validators, no other policy)."""
    name, media_type = CLIENT_FILES.get(path, ("", ""))
    file = CLIENT_DIST / name
    if not name or not file.is_file():
        raise HTTPException(404, f"{path} is not here: is socket.io-client installed? (`make setup`)")
    return FileResponse(file, media_type=media_type)


class ClientFilesFirst:
    """The ASGI app in front: the Socket.IO client's files to the API, everything else to Socket.IO.

    Socket.IO's ASGI app takes every request under `/socket.io/` for Engine.IO (whose endpoint is
    `/socket.io/?EIO=4&transport=...`), so the client's files there must be routed before it sees them."""

    def __init__(self, socketio_app: ASGIApp, api: ASGIApp) -> None:
        self._socketio_app = socketio_app
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in CLIENT_FILES:
            await self._api(scope, receive, send)
        else:
            await self._socketio_app(scope, receive, send)


class WebEdge:
    """Builds the ASGI app; Socket.IO sessions are rooms named by the session id.

    Built before the master (which sends through it); `bind` names the master before it serves."""

    def __init__(
        self,
        new_session_id: Callable[[], str],
        is_healthy: Callable[[], bool],
        cors_origins: tuple[str, ...] = (),
    ) -> None:
        self._master: MasterFace | None = None
        self._new_session_id = new_session_id
        self._is_healthy = is_healthy
        # None: only the page's own origin may connect; otherwise the page's own and the listed ones.
        origins = OriginPolicy(cors_origins) if cors_origins else None
        self.sio = AckAwareServer(
            async_mode="asgi",
            logger=False,
            engineio_logger=False,
            max_http_buffer_size=1_000_000,
            cors_allowed_origins=origins,
            # Both, as the original master: clients start with long-polling and upgrade to a WebSocket.
            transports=["polling", "websocket"],
            allow_upgrades=True,
        )
        self._sessions: dict[str, str] = {}  # Socket.IO sid -> session id
        self._members: dict[str, set[str]] = {}  # session id -> its connections
        self._dashboards: set[str] = set()  # Socket.IO sids of the dashboards' connections (no session)
        self._dashboard_loop: asyncio.Task[None] | None = None  # runs while `_dashboards` is not empty
        self._connections: Connections | None = None  # made from the master's settings when first needed
        self._register_events()
        self.api = self._build_api()
        self.app = ClientFilesFirst(socketio.ASGIApp(self.sio, other_asgi_app=self.api), self.api)

    def bind(self, master: MasterFace) -> None:
        """Hand users' questions and sessions to `master` from now on."""
        self._master = master
        self._connections = None  # counted afresh, with this master's limits
        _ = self.connections  # made now: the open-files check (connection_cap) logs at start, not at a first user

    @property
    def master(self) -> MasterFace:
        """The bound master."""
        if self._master is None:
            raise RuntimeError("WebEdge is not bound to a master: call bind() before serving")
        return self._master

    async def send(
        self, event: str, payload: Payload, session_id: str, on_ack: Callable[[], None] | None = None
    ) -> int:
        """Send an event to every connection of a session; `on_ack` runs when one acknowledges it.
        Returns how many connections it went to."""
        return await self.send_data(event, payload.dump(), session_id, on_ack)

    async def send_data(
        self, event: str, data: object, session_id: str, on_ack: Callable[[], None] | None = None
    ) -> int:
        """`send` with the payload already as its JSON object (from the master's core in another process)."""
        members = self._members.get(session_id, set())
        if on_ack is None:
            await self.sio.emit(event, data, to=session_id)
            return len(members)

        def acked(*_: object) -> None:
            on_ack()

        for sid in list(members):
            await self.sio.emit(event, data, to=sid, callback=acked)
        return len(members)

    async def broadcast(self, event: str, payload: Payload, per_second: float = 0.0, chunk: int = 50) -> int:
        """Send an event to every connected client, to at most `per_second` of them a second (0: as fast as it
        goes); returns to how many.

        Not python-socketio's emit to all, which starts one task per client at once: with thousands of clients,
        thousands of sends in one go stall every other user's answer (0.3 to 2 s with 3,000 clients). Here the
        packet is encoded once and put in each client's Engine.IO queue in turn, `chunk` clients at a time with
        the loop free in between (for `chunk / per_second` seconds), so answers go out meanwhile."""
        from engineio import packet as eio_packet  # here: the rest of the module needs none of Engine.IO's names

        encoded = self.sio.packet_class(socketio.packet.EVENT, namespace="/", data=[event, payload.dump()]).encode()
        message = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        clients = [eio_sid for _, eio_sid in self.sio.manager.get_participants("/", None)]
        for i, eio_sid in enumerate(clients):
            if i and i % chunk == 0:
                await asyncio.sleep(chunk / per_second if per_second > 0 else 0)
            await self.sio.eio.send_packet(eio_sid, message)  # a client gone meanwhile is skipped
        return len(clients)

    def _register_events(self) -> None:
        sio = self.sio

        @sio.event  # type: ignore[untyped-decorator]
        async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
            self._count_connection(sid, environ)  # or refuse it: too many connections, in all or from its address
            if is_dashboard(auth):
                refused = dashboard_refusal(self.master.settings.operator_token, auth)
                if refused is not None:  # the page shows the message; the client does not retry
                    raise socketio.exceptions.ConnectionRefusedError(refused)
                await self._dashboard_joined(sid)
                return
            offered = auth.get("sessionId") if isinstance(auth, dict) else None
            session_id = offered if isinstance(offered, str) and SESSION_RE.match(offered) else None
            session_id = session_id or self._new_session_id()
            self._sessions[sid] = session_id
            self._members.setdefault(session_id, set()).add(sid)
            self.master.session_opened(session_id)
            await sio.enter_room(sid, session_id)
            await sio.emit(Events.SESSION_ID, session_id, to=sid)
            await sio.emit(Events.STATUS, self.master.status_summary().dump(), to=sid)
            await self.master.session_connected(session_id)

        @sio.event  # type: ignore[untyped-decorator]
        async def disconnect(sid: str, *args: object) -> None:
            self.connections.closed(sid)
            if sid in self._dashboards:
                self._dashboard_left(sid)
                return
            session_id = self._sessions.pop(sid, None)
            members = self._members.get(session_id or "")
            if members is not None and session_id is not None:
                self.master.session_closed(session_id)
                members.discard(sid)
                if not members:
                    del self._members[session_id or ""]

        @sio.on(Events.USER_QUERY)  # type: ignore[untyped-decorator]
        async def user_query(sid: str, data: object = None) -> dict[str, Any]:
            ack = await self._user_query(sid, data)
            if ack.error is not None and not ACK_REQUESTED.get():
                # A baseline client shows only events: tell it why as an answer it shows.
                await sio.emit(Events.AI_RESPONSE, refusal(query_text(data), ack.error, now_ms()).dump(), to=sid)
            return ack.dump()

    async def _dashboard_joined(self, sid: str) -> None:
        """A dashboard connected: into the dashboards' room, and snapshots from now on. No session: no session id,
        no answers, and its `user-query` is refused as sessionless."""
        self._dashboards.add(sid)
        await self.sio.enter_room(sid, DASHBOARD_ROOM)
        if self._dashboard_loop is None or self._dashboard_loop.done():
            # The loop's first snapshot goes out at once, to this one too.
            self._dashboard_loop = asyncio.create_task(
                tell_dashboards(self.master, self._send_dashboard), name="dashboards"
            )
        else:
            await self.sio.emit(Events.DASHBOARD, (await self.master.dashboard_snapshot()).dump(), to=sid)

    def _dashboard_left(self, sid: str) -> None:
        """A dashboard disconnected; with the last one gone, no more snapshots are built."""
        self._dashboards.discard(sid)
        if not self._dashboards and self._dashboard_loop is not None:
            self._dashboard_loop.cancel()
            self._dashboard_loop = None

    @property
    def dashboards(self) -> int:
        """How many dashboards are connected."""
        return len(self._dashboards)

    @property
    def dashboards_updating(self) -> bool:
        """Whether snapshots are being built and sent (exactly while a dashboard is connected)."""
        return self._dashboard_loop is not None and not self._dashboard_loop.done()

    async def _send_dashboard(self, snapshot: DashboardSnapshot) -> None:
        await self.sio.emit(Events.DASHBOARD, snapshot.dump(), to=DASHBOARD_ROOM)

    async def _user_query(self, sid: str, data: object) -> QueryAck:
        session_id = self._sessions.get(sid)
        if session_id is None:
            return self.master.refuse("no session: reconnect and try again", "no_session")
        if ACK_REQUESTED.get():
            self.master.expects_acks(session_id)
        try:
            query = validate(UserQuery, data)
        except DecodeError as e:
            return self.master.refuse(f"{e.reason}; {QUERY_SHAPE}")
        return await self.master.submit(session_id, query, self.connections.address(sid))

    @property
    def connections(self) -> Connections:
        """The open Socket.IO connections, counted against MAX_CONNECTIONS and MAX_CONNECTIONS_PER_ADDRESS."""
        if self._connections is None:
            s = self.master.settings
            most = connection_cap(s.max_connections)
            self._connections = Connections(most, s.max_connections_per_address, self._is_open)
        return self._connections

    def _is_open(self, sid: str) -> bool:
        """Whether connection `sid` is open or connecting (python-socketio keeps it in its namespace's room None
        from the connect until the disconnect, and takes it out of there when a connect is refused)."""
        return sid in self.sio.manager.rooms.get("/", {}).get(None, {})

    def _count_connection(self, sid: str, environ: dict[str, Any]) -> None:
        """Count a new connection by its client's address, or refuse it with a message the client gets."""
        address = client_address(environ, self.master.settings.trusted_proxy_hops)
        refused = self.connections.refusal(address)
        if refused is not None:
            reason, message = refused
            self.master.count_refusal(reason)
            raise socketio.exceptions.ConnectionRefusedError(message)
        self.connections.opened(sid, address)

    def _operator_only(self, request: Request) -> None:
        """Refuses a request without the operator token (`Authorization: Bearer <token>`): 401, or 403 when this
        master has none."""
        refused = check(self.master.settings.operator_token, bearer_token(request.headers.get("authorization")))
        if refused is not None:
            challenge = {"WWW-Authenticate": CHALLENGE} if refused.status == 401 else None
            raise HTTPException(refused.status, refused.message, headers=challenge)

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="Swarm AI Lab master", docs_url="/api/docs", openapi_url="/api/openapi.json")

        @api.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", media_type="text/html")

        @api.get("/static/{name}", include_in_schema=False)
        async def static(name: str) -> FileResponse:
            path = WEB_DIR / name
            if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in STATIC_TYPES:
                raise HTTPException(404)
            return FileResponse(path, media_type=STATIC_TYPES[path.suffix])

        @api.get("/dashboard", include_in_schema=False)
        async def dashboard() -> FileResponse:
            return FileResponse(WEB_DIR / "dashboard.html", media_type="text/html")

        @api.get("/vendor/{name}", include_in_schema=False)
        async def vendor(name: str) -> FileResponse:
            return serve_vendor_file(name)

        @api.get(CLIENT_FILES_PATH, include_in_schema=False)
        async def client_file(name: str) -> FileResponse:
            return serve_client_file(f"/socket.io/{name}")

        @api.get("/healthz")
        async def healthz() -> JSONResponse:
            ok = self._is_healthy()
            return JSONResponse({"status": "ok" if ok else "degraded", "mqtt": ok}, status_code=200 if ok else 503)

        @api.get("/leader")
        async def leader() -> JSONResponse:
            # Public, for the proxy's health check (standby masters): 200 only from the master that leads.
            info = await self.master.leader()
            return JSONResponse(info, status_code=200 if info.get("leading") else 503)

        @api.get("/api/limits")
        async def limits() -> JSONResponse:
            # Public: what the chat page needs (its counter), without the operator views' details.
            s = self.master.settings
            return JSONResponse(
                {
                    "max_query_chars": s.max_query_chars,
                    "rate_per_minute": s.rate_per_minute,
                    "max_in_flight_per_session": s.max_in_flight_per_session,
                }
            )

        @api.get("/api/status", dependencies=[Depends(self._operator_only)])
        async def status() -> StatusReport:
            return await self.master.status_report()

        @api.get("/metrics", dependencies=[Depends(self._operator_only)])
        async def metrics() -> Response:
            return Response(await self.master.metrics_text(), media_type="text/plain; version=0.0.4")

        api.include_router(autoscaler_routes(lambda: self.master, self._operator_only))
        return api
