"""Waiting for a local cluster's processes to be ready, and asking its master over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from lab.system.procs import ManagedProcess
from services.master.settings import MasterSettings
from services.protocol import StatusReport, validate

if TYPE_CHECKING:
    import httpx

    from lab.system.config import ClusterConfig

__all__ = ["ClusterStartError", "MasterHttp", "OperatorAccess", "operator_headers", "tail_text", "wait_ready"]

_TAIL_IN_ERRORS = 20


class ClusterStartError(RuntimeError):
    """The cluster did not become ready; the message carries the failing process's last log lines."""


def tail_text(proc: ManagedProcess) -> str:
    """The last log lines of `proc`, formatted for an error message."""
    lines = proc.tail(_TAIL_IN_ERRORS)
    if not lines:
        return f"({proc.name} wrote no output)"
    head = f"last {len(lines)} lines of {proc.name}:" if len(lines) > 1 else f"last line of {proc.name}:"
    return head + "\n" + "\n".join(f"  {proc.name} | {x}" for x in lines)


def wait_ready(
    what: str,
    ready: Callable[[], bool],
    watched: list[ManagedProcess],
    deadline: float,
    timeout_s: float,
    explain: Callable[[], str] | None = None,
) -> None:
    """Poll `ready` until true; fail early if a watched process exits, or at the deadline (`timeout_s` after
    the start, for the message)."""
    while True:
        for proc in watched:
            code = proc.returncode
            if code is not None:
                raise ClusterStartError(
                    f"{proc.name} exited with code {code} while waiting for {what}\n{tail_text(proc)}"
                )
        if ready():
            return
        if time.monotonic() >= deadline:
            detail = explain() if explain else tail_text(watched[-1])
            raise ClusterStartError(f"timed out after {timeout_s:g} s waiting for {what}\n{detail}")
        time.sleep(0.1)


def operator_headers(operator_token: str | None) -> dict[str, str]:
    """The headers that present `operator_token` to the master (none without one)."""
    return {"Authorization": f"Bearer {operator_token}"} if operator_token else {}


class OperatorAccess:
    """What a local cluster's operator needs (LocalCluster has it): the master's operator token, the headers that
    present it, and the dashboard's URL with it."""

    config: ClusterConfig

    @property
    def operator_token(self) -> str:
        """The master's OPERATOR_TOKEN (random per cluster, or the one extra_env gives): /metrics, /api/status and
        the dashboard need it."""
        return self.config.extra_env.get(MasterSettings.env_name("operator_token")) or self.config.operator_token

    @property
    def operator_headers(self) -> dict[str, str]:
        """The headers that present the operator token (`Authorization: Bearer <token>`), for /api/status and
        /metrics."""
        return operator_headers(self.operator_token)

    @property
    def dashboard_url(self) -> str:
        """The dashboard's URL with the operator token in its fragment (never sent to the server in the request
        line: the page reads it, moves it into its Socket.IO auth and strips it from the address bar)."""
        return f"{self.config.web_url}/dashboard#token={self.operator_token}"


class MasterHttp:
    """The master's HTTP API (/healthz, /api/status), over one client created on first use; `operator_token`
    goes with every request (`Authorization: Bearer`), as /api/status and /metrics need it."""

    def __init__(self, web_url: str, operator_token: str | None = None) -> None:
        self.web_url = web_url
        self._headers = operator_headers(operator_token)
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None

    def _client(self) -> httpx.Client:
        import httpx  # here, not at the top: the `lab` command's parser must not load it

        with self._lock:
            if self._http is None:
                self._http = httpx.Client(base_url=self.web_url, timeout=5.0, headers=self._headers)
            return self._http

    def status(self) -> dict[str, Any]:
        """GET /api/status as a dict."""
        response = self._client().get("/api/status")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def status_report(self) -> StatusReport:
        """GET /api/status, read (a DecodeError, a ValueError, when the body is not a status)."""
        return validate(StatusReport, self.status())

    def healthy(self) -> bool:
        """Whether the master answers /healthz with 200."""
        import httpx

        try:
            return self._client().get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def listed_workers(self) -> int:
        """How many workers /api/status lists as idle or busy (0 when it cannot tell)."""
        import httpx

        try:
            listed = self.status_report().workers
        except (httpx.HTTPError, ValueError):
            return 0
        return sum(w.state in ("idle", "busy") for w in listed)

    def missing_workers(self, worker_ids: Iterable[str]) -> list[str]:
        """Those of `worker_ids` that /api/status does not list as idle or busy (all, if it cannot tell)."""
        import httpx

        wanted = list(worker_ids)
        try:
            listed = self.status_report().workers
        except (httpx.HTTPError, ValueError):  # ValueError: not JSON, or not a status (DecodeError)
            return wanted
        present = {w.worker_id for w in listed if w.state != "offline"}
        return [wid for wid in wanted if wid not in present]

    def close(self) -> None:
        """Close the client, if one was made."""
        with self._lock:
            if self._http is not None:
                self._http.close()
