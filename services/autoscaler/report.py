"""Every decision to the log, and to the master (`POST /api/scaling`), which puts it on `upb/logs`, the Watch
stream and `/metrics`: a change at once, a hold at most every HOLD_EVERY_S seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from services.autoscaler.client import MasterUnavailableError
from services.autoscaler.policy import Decision
from services.protocol import ScalingReport
from services.protocol.rest import REASON_MAX_CHARS

log = logging.getLogger(__name__)

HOLD_EVERY_S = 30.0


def scaling_report(decision: Decision, now_ms: int) -> ScalingReport:
    """The master's view of `decision`, made at `now_ms` (ms since the epoch)."""
    seen = decision.observation
    reason = decision.reason
    if len(reason) > REASON_MAX_CHARS:
        reason = reason[: REASON_MAX_CHARS - 3] + "..."
    return ScalingReport(
        timestamp=now_ms,
        current=decision.current,
        target=decision.target,
        direction=decision.direction,  # type: ignore[arg-type]  # "up" | "down" | "hold", checked by the model
        reason=reason,
        queue_length=seen.queued,
        busy=seen.busy,
        idle=seen.workers - seen.busy,
        arrival_rate_per_s=seen.arrival_rate_per_s,
        service_time_s=seen.service_time_s or 0.0,
        utilization=decision.utilization,
        predicted_wait_s=decision.predicted_wait_s,
    )


def describe(decision: Decision) -> str:
    """One log line: the change, the reason and the inputs it was decided on."""
    seen = decision.observation
    service = "unmeasured" if seen.service_time_s is None else f"{seen.service_time_s:.3g} s"
    wait = "unbounded" if decision.predicted_wait_s is None else f"{decision.predicted_wait_s:.2f} s"
    change = f"{decision.current} -> {decision.target} workers ({decision.direction})"
    return (
        f"{change}: {decision.reason} "
        f"[workers {seen.workers} ({seen.busy} busy, {seen.starting} starting), queued {seen.queued}, "
        f"arrivals {seen.arrival_rate_per_s:.3g}/s, service {service} (cv2 {seen.service_cv2:.2f}), "
        f"utilization at target {decision.utilization:.0%}, predicted wait {wait}]"
    )


class Reports(Protocol):
    """Where decisions go (MasterClient has it): POST /api/scaling."""

    async def report(self, report: ScalingReport) -> None:
        """Post one decision."""
        ...


class Reporter:
    """Logs each decision (INFO when it changes the target, DEBUG otherwise) and posts it to the master."""

    def __init__(
        self,
        master: Reports,
        hold_every_s: float = HOLD_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: round(time.time() * 1000),
    ) -> None:
        self._master = master
        self._hold_every_s = hold_every_s
        self._clock = clock
        self._wall_ms = wall_ms
        self._posted_target: int | None = None
        self._posted_at: float | None = None

    async def report(self, decision: Decision) -> bool:
        """Log `decision` and post it when due; whether it was posted (a failure is logged and retried with the
        next decision)."""
        log.log(logging.DEBUG if decision.direction == "hold" else logging.INFO, "%s", describe(decision))
        now = self._clock()
        changed = decision.direction != "hold" or decision.target != self._posted_target
        due = self._posted_at is None or now - self._posted_at >= self._hold_every_s
        if not (changed or due):
            return False
        try:
            await self._master.report(scaling_report(decision, self._wall_ms()))
        except MasterUnavailableError as e:
            log.warning("could not report the decision to the master: %s", e)
            return False
        self._posted_target, self._posted_at = decision.target, now
        return True
