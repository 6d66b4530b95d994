"""The latest answers' latencies, and from them answers per second and latency percentiles over the last minutes.

`add` is on the hot path (once per answer): one deque append. The per-second points are built only when
`series` is asked for (by the dashboard loop, about once a second while a dashboard is open), and only for the
seconds completed since the last call; a closed second never changes, so it is summarised once.

Why the master keeps this history and the page does not build it from snapshots: a dashboard opened (or reloaded,
or reconnected) late shows the last five minutes at once, and percentiles need every answer's latency, which only
the master sees (a page could not merge per-second percentiles into a minute's, nor see answers while closed).
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

SECOND_MS = 1000
WINDOW_S = 300  # five minutes of per-second points
# Answers kept until they are summarised: about 170 answers a second over the whole window, a few MB at most.
# At higher rates the oldest seconds of a window summarised at once (a dashboard opened late) come out short.
CAPACITY = 50_000


class Point(NamedTuple):
    """One second: when it starts (ms), how many answers were delivered in it, and their latency percentiles
    (ms, None without answers)."""

    start_ms: int
    answers: int
    p50_ms: int | None
    p95_ms: int | None


def percentile(sorted_values: list[int], p: float) -> int:
    """The nearest-rank `p`-th percentile (0 < p <= 100) of a non-empty sorted list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(start_ms: int, latencies: list[int]) -> Point:
    """The point of the second starting at `start_ms` with these answers' latencies."""
    if not latencies:
        return Point(start_ms, 0, None, None)
    ordered = sorted(latencies)
    return Point(start_ms, len(ordered), percentile(ordered, 50), percentile(ordered, 95))


class RecentAnswers:
    """Answers as (delivered at, latency) in ms, bounded, and their per-second points over `window_s` (none
    before `started_ms`: a master that just started has no history to show as seconds without answers)."""

    def __init__(self, window_s: int = WINDOW_S, capacity: int = CAPACITY, started_ms: int = 0) -> None:
        self.window_ms = window_s * SECOND_MS
        self._answers: deque[tuple[int, int]] = deque(maxlen=capacity)
        self._points: deque[Point] = deque(maxlen=window_s)
        self._summarised_until_ms = started_ms - started_ms % SECOND_MS  # seconds before this are points already

    def add(self, delivered_ms: int, latency_ms: int) -> None:
        """Record one answer (the hot path: one append)."""
        self._answers.append((delivered_ms, latency_ms))

    def series(self, now_ms: int) -> list[Point]:
        """One point per second of the window that ends with the last complete second before `now_ms`, oldest
        first (seconds without answers included).

        Answers arrive in time order (each is recorded when it is delivered), so the new ones are read from the
        right end of the deque back to the last second already summarised. An answer recorded late for a
        second already summarised (the wall clock stepped back) is left out."""
        current = now_ms - now_ms % SECOND_MS  # the start of the second under way, not summarised yet
        start = max(self._summarised_until_ms, current - self.window_ms)
        if current > start:
            by_second: dict[int, list[int]] = {}
            for delivered, latency in reversed(self._answers):
                if delivered < start:
                    break
                if delivered < current:
                    by_second.setdefault(delivered - delivered % SECOND_MS, []).append(latency)
            self._points.extend(summarise(s, by_second.get(s, [])) for s in range(start, current, SECOND_MS))
            self._summarised_until_ms = current
        while self._points and self._points[0].start_ms < current - self.window_ms:
            self._points.popleft()
        return list(self._points)

    def summary(self, now_ms: int, seconds: int) -> Point:
        """The answers of the last `seconds` complete seconds before `now_ms` as one point (their count and
        latency percentiles), from the answers themselves: percentiles of seconds do not add up."""
        current = now_ms - now_ms % SECOND_MS
        start = current - seconds * SECOND_MS
        latencies: list[int] = []
        for delivered, latency in reversed(self._answers):
            if delivered < start:
                break
            if delivered < current:
                latencies.append(latency)
        return summarise(start, latencies)
