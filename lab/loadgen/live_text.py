"""Live stats as text: a table redrawn in place on a terminal (rich), or one plain line every few seconds
when the output is a file or a pipe (a CI log, `lab load > log`)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, TextIO

from lab.loadgen.live import LiveSnapshot

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

__all__ = ["COLUMNS", "PlainView", "TerminalView", "cells", "heading", "live_table", "plain_line"]

TERMINAL_EVERY_S = 2.0
PLAIN_EVERY_S = 5.0  # a log line every 2 s would drown the log
COLUMNS = (
    "sent",
    "answered",
    "failed",
    "in flight",
    "queue",
    "workers",
    "answers/s recent",
    "answers/s overall",
    "p50",
    "p95",
    "p99",
)


def seconds(value: float | None) -> str:
    """A latency for a person: '0.61 s', '12.3 s', or '-' when there is none yet."""
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def heading(s: LiveSnapshot) -> str:
    """What the run is and how far it got: 'open loop · 12 s of 60 s', then '... · 65 s, sending ended at 60 s'
    while the last answers come."""
    if not s.duration_s:
        return f"{s.title} · {s.elapsed_s:.0f} s"
    if round(s.elapsed_s) <= round(s.duration_s):
        return f"{s.title} · {s.elapsed_s:.0f} s of {s.duration_s:.0f} s"
    return f"{s.title} · {s.elapsed_s:.0f} s, sending ended at {s.duration_s:.0f} s"


def cells(s: LiveSnapshot) -> dict[str, str]:
    """Each column's value, as the table and the widget show it."""
    return {
        "sent": f"{s.sent}/{s.planned}" if s.planned is not None else str(s.sent),
        "answered": str(s.answered),
        "failed": str(s.failed),
        "in flight": str(s.in_flight),
        "queue": "-" if s.queue is None else str(s.queue),
        "workers": "-" if s.workers is None else str(s.workers),
        "answers/s recent": f"{s.recent_per_s:.1f}",
        "answers/s overall": f"{s.overall_per_s:.1f}",
        "p50": seconds(s.p50_s),
        "p95": seconds(s.p95_s),
        "p99": seconds(s.p99_s),
    }


def scaling_note(s: LiveSnapshot) -> str:
    """The autoscaler's last decision, '' without one: 'autoscaler: 2 -> 4 workers (up): <reason>'."""
    d = s.scaling
    return "" if d is None else f"autoscaler: {d.current} -> {d.target} workers ({d.direction}): {d.reason}"


def plain_line(s: LiveSnapshot) -> str:
    """One log line: '[open loop · 12 s of 60 s] sent 36/60 · answered 30 · ...'."""
    c = cells(s)
    note = scaling_note(s)
    return (
        f"[{heading(s)}] sent {c['sent']} · answered {c['answered']} · failed {c['failed']} · "
        f"in flight {c['in flight']} · queue {c['queue']} · workers {c['workers']} · "
        f"answers/s {c['answers/s recent']} (last {s.recent_window_s:g} s) {c['answers/s overall']} (overall) · "
        f"latency p50 {c['p50']} p95 {c['p95']} p99 {c['p99']}" + (f" · {note}" if note else "")
    )


def live_table(s: LiveSnapshot) -> Table:
    """The terminal's table: one header row, one row of numbers, the run's progress as its title."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=heading(s),
        title_justify="left",
        caption=f"recent: last {s.recent_window_s:g} s · latency so far · queue, workers: the master's /api/status"
        + (f"\n{scaling_note(s)}" if s.scaling else ""),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    headers = {
        "answers/s recent": f"answers/s\nlast {s.recent_window_s:g} s",
        "answers/s overall": "answers/s\noverall",
        "p50": "latency\np50",
    }
    for column in COLUMNS:
        table.add_column(headers.get(column, column), justify="right")
    values = cells(s)
    styles = {"failed": "bold red" if s.failed else "", "queue": "yellow" if s.queue else ""}
    table.add_row(*(f"[{styles[c]}]{values[c]}[/]" if styles.get(c) else values[c] for c in COLUMNS))
    return table


class TerminalView:
    """A rich table redrawn in place; the last frame stays on screen when the run ends."""

    every_s = TERMINAL_EVERY_S

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(file=sys.stderr)
        self._live: Live | None = None
        self._lock = threading.Lock()  # updates come from the monitor's thread, close from the caller's

    def update(self, snapshot: LiveSnapshot) -> None:
        """Show `snapshot` (the first one starts the live display: nothing is drawn while users connect)."""
        from rich.live import Live

        with self._lock:
            if self._live is None:
                self._live = Live(live_table(snapshot), console=self.console, auto_refresh=False)
                self._live.start(refresh=True)
            else:
                self._live.update(live_table(snapshot), refresh=True)

    def close(self) -> None:
        """Stop redrawing, leaving the last frame."""
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None


class PlainView:
    """One line at most every PLAIN_EVERY_S, and the last one when the run ends."""

    every_s = PLAIN_EVERY_S

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._last: LiveSnapshot | None = None
        self._printed: LiveSnapshot | None = None
        self._lock = threading.Lock()

    def update(self, snapshot: LiveSnapshot) -> None:
        """Print `snapshot` as one line."""
        with self._lock:
            self._last = snapshot
            self._print(snapshot)

    def close(self) -> None:
        """Print the final numbers, unless they were the last line printed."""
        with self._lock:
            if self._last is not None and self._last is not self._printed:
                self._print(self._last)

    def _print(self, snapshot: LiveSnapshot) -> None:
        self._printed = snapshot
        print(plain_line(snapshot), file=self.stream, flush=True)
