"""What the web edge needs of the master: the `Master` itself when both run in one process, or its proxy
in the web front's process (`front.RemoteMaster`) when the master spreads over two."""

from __future__ import annotations

from typing import Protocol

from services.master.settings import MasterSettings
from services.protocol import DashboardSnapshot, QueryAck, ScalingReport, StatusReport, SystemStatus, UserQuery


class MasterFace(Protocol):
    """The master as its web edge sees it."""

    settings: MasterSettings

    def status_summary(self) -> SystemStatus:
        """Workers online, idle and busy, and the queue (what a client gets on connect)."""

    def session_opened(self, session_id: str) -> None:
        """A connection of `session_id` opened (before `session_connected`)."""

    def session_closed(self, session_id: str) -> None:
        """A connection of `session_id` closed."""

    async def session_connected(self, session_id: str) -> None:
        """A client joined a session: tell it where its open questions are and resend its answers."""

    def refuse(self, message: str, reason: str = "bad_request") -> QueryAck:
        """The ack of a question that was not accepted, counted by `reason`."""

    def count_refusal(self, reason: str) -> None:
        """Count a refused connection by `reason`."""

    def expects_acks(self, session_id: str) -> None:
        """A client of this session acknowledges its answers."""

    async def submit(self, session_id: str, query: UserQuery, address: str = "") -> QueryAck:
        """Accept a user's question or say why not."""

    async def status_report(self) -> StatusReport:
        """The REST status."""

    async def leader(self) -> dict[str, object]:
        """Whether this master leads: `{leading, epoch, name}`."""

    async def metrics_text(self) -> bytes:
        """The Prometheus text of the master's metrics."""

    async def dashboard_snapshot(self) -> DashboardSnapshot:
        """The dashboard's snapshot."""

    async def report_scaling(self, report: ScalingReport) -> None:
        """Record one decision of the autoscaler (log, log topic, Watch stream, metrics)."""

    async def retire_worker(self, worker_id: str) -> bool | None:
        """Assign nothing more to a worker; whether it holds no task now, None when it is not known."""
