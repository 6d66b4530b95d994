"""What a decision of the autoscaler becomes at the master (`POST /api/scaling`): one log line and one Watch
event, read from the `ScalingReport` as sent (the metrics keep it too, in `metrics.py`)."""

from __future__ import annotations

import re

from services.protocol import ScalingReport
from services.protocol.rpc import pb

DECISION_KIND = "scale.decision"
INT32_MAX = 2**31 - 1
# Control characters (a newline among them) would let a reason forge lines of the log.
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def decision_line(report: ScalingReport) -> str:
    """The log line of a decision: `autoscaler: 3 -> 5 workers (up): <reason>`."""
    reason = CONTROL.sub(" ", report.reason).strip()
    return f"autoscaler: {report.current} -> {report.target} workers ({report.direction}): {reason}"


def decision_event(report: ScalingReport, now_ms: int) -> pb.Event:
    """The Watch event of a decision, at the master's clock: its reason, target and current workers, and the
    queue and workers the autoscaler saw when it decided."""

    def int32(n: int) -> int:
        return min(n, INT32_MAX)

    return pb.Event(
        kind=DECISION_KIND,
        timestamp=now_ms,
        reason=report.reason,
        queue_length=int32(report.queue_length),
        busy_workers=int32(report.busy),
        idle_workers=int32(report.idle),
        target_workers=int32(report.target),
        current_workers=int32(report.current),
    )
