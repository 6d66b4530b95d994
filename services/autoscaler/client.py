"""The master's HTTP API as the autoscaler uses it: status and metrics to observe, a worker to retire, a
decision to report. Every request carries the operator token (`Authorization: Bearer`)."""

from __future__ import annotations

import httpx

from services.protocol import ScalingReport, StatusReport, validate

TIMEOUT_S = 5.0


class MasterUnavailableError(Exception):
    """The master did not answer, or not as expected; the message says which request and why (never the token)."""


class MasterClient:
    """One HTTP client to the master at `base_url`, presenting `operator_token`."""

    def __init__(self, base_url: str, operator_token: str, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout_s, headers={"Authorization": f"Bearer {operator_token}"}
        )

    async def status(self) -> StatusReport:
        """GET /api/status, read."""
        response = await self._send("GET", "/api/status")
        try:
            return validate(StatusReport, response.json())
        except ValueError as e:  # not JSON, or not a status (DecodeError)
            raise MasterUnavailableError(f"GET /api/status: not a status report ({e})") from None

    async def metrics(self) -> str:
        """GET /metrics: the Prometheus text."""
        return (await self._send("GET", "/metrics")).text

    async def retire(self, worker_id: str) -> bool | None:
        """POST /api/workers/{worker_id}/retire: the master assigns the worker nothing more; True when it has no
        task in flight (stopping it now loses nothing), False when it is still working, None when the master does
        not know it."""
        path = f"/api/workers/{worker_id}/retire"
        response = await self._send("POST", path, allow_404=True)
        if response.status_code == 404:
            return None
        try:
            idle = response.json()["idle"]
        except (ValueError, KeyError, TypeError):
            raise MasterUnavailableError(f"POST {path}: unexpected answer {response.text[:200]!r}") from None
        if not isinstance(idle, bool):
            raise MasterUnavailableError(f"POST {path}: `idle` is not a boolean: {idle!r}")
        return idle

    async def report(self, report: ScalingReport) -> None:
        """POST /api/scaling: one decision, for the master's log, Watch stream and metrics."""
        await self._send("POST", "/api/scaling", json=report.dump())

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, method: str, path: str, *, allow_404: bool = False, json: object = None) -> httpx.Response:
        """One request; a MasterUnavailableError for no answer or an answer other than 200 (and 404 if allowed)."""
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.HTTPError as e:
            raise MasterUnavailableError(f"{method} {path}: {type(e).__name__}: {e or 'no answer'}") from None
        if response.status_code == 200 or (allow_404 and response.status_code == 404):
            return response
        raise MasterUnavailableError(f"{method} {path}: HTTP {response.status_code}: {_detail(response)}")


def _detail(response: httpx.Response) -> str:
    """What an error answer says (FastAPI's `detail`), shortened."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail if detail is not None else response.text)[:300]
