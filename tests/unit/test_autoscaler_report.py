"""What the autoscaler reports to the master: every change at once, a hold at most every 30 s, each as a valid
ScalingReport; a master that does not take it is retried with the next decision."""

from __future__ import annotations

import logging

import pytest

from services.autoscaler.client import MasterUnavailableError
from services.autoscaler.policy import Decision, Observation
from services.autoscaler.report import Reporter, describe, scaling_report
from services.protocol import ScalingReport


class Master:
    """Takes reports (or refuses them while `down`)."""

    def __init__(self) -> None:
        self.reports: list[ScalingReport] = []
        self.down = False

    async def report(self, report: ScalingReport) -> None:
        if self.down:
            raise MasterUnavailableError("POST /api/scaling: ConnectError")
        self.reports.append(report)


def decision(current: int, target: int, at_s: float = 0.0, reason: str = "because") -> Decision:
    seen = Observation(
        at_s=at_s, workers=current, busy=1, queued=3, arrival_rate_per_s=0.5, service_time_s=None, starting=0
    )
    return Decision(at_s, current, target, reason, utilization=0.75, predicted_wait_s=None, observation=seen)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_changes_are_posted_at_once_and_holds_at_most_every_30_s() -> None:
    master, clock = Master(), Clock()
    reporter = Reporter(master, clock=clock, wall_ms=lambda: 1_700_000_000_000)
    assert await reporter.report(decision(1, 3))  # a change
    clock.now = 1.0
    assert not await reporter.report(decision(3, 3))  # a hold at the target already posted
    clock.now = 29.0
    assert not await reporter.report(decision(3, 3))
    clock.now = 31.5
    assert await reporter.report(decision(3, 3))  # the hold of the last 30 s
    clock.now = 32.0
    assert await reporter.report(decision(3, 2))  # a change again, at once
    assert [(r.current, r.target, r.direction) for r in master.reports] == [
        (1, 3, "up"),
        (3, 3, "hold"),
        (3, 2, "down"),
    ]


async def test_a_report_the_master_did_not_take_is_sent_with_the_next_decision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    master, clock = Master(), Clock()
    reporter = Reporter(master, clock=clock)
    master.down = True
    with caplog.at_level(logging.WARNING):
        assert not await reporter.report(decision(1, 2))
    assert "could not report the decision to the master" in caplog.text
    master.down = False
    clock.now = 2.0
    assert await reporter.report(decision(2, 2))  # holds at 2, which the master has not heard of
    assert [(r.current, r.target) for r in master.reports] == [(2, 2)]


def test_the_report_carries_the_decision_and_what_it_was_made_from() -> None:
    report = scaling_report(decision(2, 4, reason="x" * 900), 1_700_000_000_123)
    assert (report.timestamp, report.current, report.target, report.direction) == (1_700_000_000_123, 2, 4, "up")
    assert (report.queue_length, report.busy, report.idle) == (3, 1, 1)
    assert (report.arrival_rate_per_s, report.service_time_s, report.utilization) == (0.5, 0.0, 0.75)
    assert report.predicted_wait_s is None
    assert len(report.reason) == 500 and report.reason.endswith("...")  # the master's limit


def test_the_log_line_says_the_change_once_with_its_inputs() -> None:
    line = describe(decision(2, 4, reason="3 queued"))
    assert line.startswith("2 -> 4 workers (up): 3 queued [")
    assert "queued 3" in line and "service unmeasured" in line and "predicted wait unbounded" in line
    assert describe(decision(4, 4, reason="steady")).startswith("4 -> 4 workers (hold): steady")
