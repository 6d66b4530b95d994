"""Arrival schedules: when open-loop users send, as sorted seconds from the start of a run.

Constant, ramp and step rates are piecewise-linear rate curves. Each can be laid out evenly (the k-th send
at the moment the integrated rate reaches k) or as a Poisson process with that rate (the integrated rate
inverted at the arrivals of a unit-rate Poisson process), which is exact, unlike thinning.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Seed = int | random.Random | None
Unit = Literal["s", "ms", "auto"]

# Timestamps this large are epoch milliseconds: as seconds they would lie after the year 5000.
EPOCH_MS_FROM = 1e11


@dataclass(frozen=True)
class Segment:
    """From `start_s` to `end_s` the rate goes linearly from `start_rate` to `end_rate` (per second)."""

    start_s: float
    end_s: float
    start_rate: float
    end_rate: float

    @property
    def expected(self) -> float:
        """Expected arrivals in the segment (the rate's integral over it)."""
        return (self.start_rate + self.end_rate) / 2 * (self.end_s - self.start_s)

    def time_of(self, x: float) -> float:
        """The time at which the segment's integrated rate reaches x (0 <= x <= expected)."""
        if x <= 0:
            return self.start_s
        slope = (self.end_rate - self.start_rate) / (self.end_s - self.start_s)
        # Solves slope/2 t^2 + r0 t = x; this form holds for slope 0 and does not cancel for small slopes.
        root = math.sqrt(max(self.start_rate**2 + 2 * slope * x, 0.0))
        return self.start_s + 2 * x / (self.start_rate + root)


def constant(rate: float, duration_s: float) -> list[float]:
    """`rate` sends per second, evenly spaced: at 0, 1/rate, 2/rate, ... while before `duration_s`."""
    _check_rate("rate", rate)
    _check_duration(duration_s)
    return _arrivals([Segment(0.0, duration_s, rate, rate)], duration_s, None)


def poisson(rate: float, duration_s: float, seed: Seed = 0) -> list[float]:
    """Poisson arrivals at `rate` per second (exponential gaps), reproducible from `seed` (None: not)."""
    _check_rate("rate", rate)
    _check_duration(duration_s)
    return _arrivals([Segment(0.0, duration_s, rate, rate)], duration_s, _rng(seed) or random.Random())


def ramp(start_rate: float, end_rate: float, duration_s: float, seed: Seed = None) -> list[float]:
    """The rate goes linearly from `start_rate` to `end_rate` over `duration_s`.

    Without `seed` the sends are evenly spread by the integrated rate; with one they are a Poisson process.
    """
    _check_rate("start_rate", start_rate)
    _check_rate("end_rate", end_rate)
    _check_duration(duration_s)
    return _arrivals([Segment(0.0, duration_s, start_rate, end_rate)], duration_s, _rng(seed))


def steps(levels: Sequence[tuple[float, float]], duration_s: float, seed: Seed = None) -> list[float]:
    """Piecewise-constant rates: `levels` is [(start_s, rate), ...], the first at 0, starts increasing.

    Each rate holds until the next start (the last until `duration_s`). Without `seed` the sends are even
    within each level; with one they are a Poisson process.
    """
    _check_duration(duration_s)
    if not levels:
        raise ValueError("steps needs at least one (start_s, rate) level")
    if levels[0][0] != 0:
        raise ValueError(f"the first level must start at 0, got {levels[0][0]}")
    for (start, rate), (following, _) in zip(levels, [*levels[1:], (duration_s, 0.0)], strict=True):
        _check_rate(f"the rate at {start} s", rate)
        if not following > start:
            raise ValueError(f"level starts must increase and lie before duration_s: {start} then {following}")
    ends = [start for start, _ in levels[1:]] + [duration_s]
    segments = [Segment(start, end, rate, rate) for (start, rate), end in zip(levels, ends, strict=True)]
    return _arrivals(segments, duration_s, _rng(seed))


def burst(
    base_rate: float,
    burst_rate: float,
    start_s: float,
    length_s: float,
    duration_s: float,
    seed: Seed = None,
) -> list[float]:
    """`base_rate`, except `burst_rate` from `start_s` for `length_s` (a step up and back down)."""
    if length_s <= 0:
        raise ValueError(f"length_s must be > 0, got {length_s}")
    if start_s <= 0 or start_s + length_s >= duration_s:
        raise ValueError(f"the burst must lie inside (0, {duration_s}) s, got {start_s} s for {length_s} s")
    return steps([(0.0, base_rate), (start_s, burst_rate), (start_s + length_s, base_rate)], duration_s, seed)


def parse_times(values: Iterable[str | float], unit: Unit = "auto") -> list[float]:
    """Timestamps as sorted seconds from the earliest one.

    `unit` is "s" or "ms"; "auto" takes epoch milliseconds (values from 1e11 on) as ms and anything else as
    seconds, so relative milliseconds need unit="ms".
    """
    if unit not in ("s", "ms", "auto"):
        raise ValueError(f"unit must be 's', 'ms' or 'auto', got {unit!r}")
    times: list[float] = []
    for n, value in enumerate(values, 1):
        try:
            t = float(value)
        except ValueError:
            raise ValueError(f"timestamp {n} is not a number: {value!r}") from None
        if not math.isfinite(t):
            raise ValueError(f"timestamp {n} is not finite: {value!r}")
        times.append(t)
    if not times:
        raise ValueError("no timestamps")
    times.sort()  # logs are often slightly out of order; a schedule is sorted
    first = times[0]
    if unit == "auto":
        unit = "ms" if first >= EPOCH_MS_FROM else "s"
    scale = 1000.0 if unit == "ms" else 1.0
    return [(t - first) / scale for t in times]


def read_csv_times(text: str, column: str = "t", unit: Unit = "auto") -> list[float]:
    """The `column` of CSV text (with a header row) as a schedule; see parse_times for `unit`."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise ValueError(f"no column {column!r} in the CSV header {reader.fieldnames}")
    # A short row has no value for the column: None, reported as not a number below.
    values = [
        (row[column] or "").strip() for row in reader if any(isinstance(v, str) and v.strip() for v in row.values())
    ]
    return parse_times(values, unit)


def replay_csv(path: str | Path, column: str = "t", unit: Unit = "auto") -> list[float]:
    """Replay the timestamps of a CSV file (seconds or ms from the start, or epoch ms)."""
    return read_csv_times(Path(path).read_text(), column, unit)


def _arrivals(segments: list[Segment], duration_s: float, rng: random.Random | None) -> list[float]:
    """Invert the integrated rate at 0, 1, 2, ... (even) or at unit-rate Poisson arrivals (rng)."""
    times: list[float] = []
    x = rng.expovariate(1.0) if rng else 0.0
    done = 0.0  # integrated rate at the start of the current segment
    for segment in segments:
        total = done + segment.expected
        while x < total:
            t = segment.time_of(x - done)
            if t < duration_s:  # rounding can put the last point on the end, which is outside
                times.append(t)
            x += rng.expovariate(1.0) if rng else 1.0
        done = total
    return times


def _rng(seed: Seed) -> random.Random | None:
    if seed is None or isinstance(seed, random.Random):
        return seed
    return random.Random(seed)


def _check_rate(name: str, rate: float) -> None:
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {rate}")


def _check_duration(duration_s: float) -> None:
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0, got {duration_s}")
