"""Arrival schedules: exact even spacing, Poisson counts within statistical bounds, ramps, steps, replays."""

from __future__ import annotations

import math
import random
import statistics
from itertools import pairwise
from pathlib import Path

import pytest

from lab.loadgen.arrivals import burst, constant, parse_times, poisson, ramp, read_csv_times, replay_csv, steps


def count_between(times: list[float], start: float, end: float) -> int:
    return sum(start <= t < end for t in times)


def test_constant_rate_sends_evenly_from_zero_until_the_end() -> None:
    assert constant(10, 2.0) == pytest.approx([i / 10 for i in range(20)])
    assert constant(3, 1.0) == pytest.approx([0, 1 / 3, 2 / 3])


def test_constant_rate_does_not_send_at_the_end_when_rounding_lands_on_it() -> None:
    # 10 x 0.3 is 3.0000000000000004 in floating point: a fourth send would fall on 0.3 itself.
    assert constant(10, 0.3) == pytest.approx([0.0, 0.1, 0.2])


def test_zero_rate_sends_nothing() -> None:
    assert constant(0, 5.0) == []
    assert poisson(0, 5.0) == []
    assert ramp(0, 0, 5.0) == []


def test_poisson_count_is_within_four_standard_deviations_of_rate_times_duration() -> None:
    times = poisson(100, 100.0, seed=1)
    assert abs(len(times) - 10_000) < 4 * math.sqrt(10_000)
    assert times == sorted(times)
    assert times[0] >= 0 and times[-1] < 100.0


def test_poisson_gaps_are_exponential_not_even() -> None:
    times = poisson(50, 200.0, seed=2)
    gaps = [b - a for a, b in pairwise(times)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.05)
    # An exponential gap's standard deviation equals its mean; even spacing would have none.
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.05)


def test_poisson_counts_per_second_vary_like_a_poisson_variable() -> None:
    times = poisson(20, 500.0, seed=3)
    counts = [count_between(times, s, s + 1) for s in range(500)]
    # Index of dispersion: variance over mean is 1 for Poisson counts.
    assert statistics.variance(counts) / statistics.fmean(counts) == pytest.approx(1.0, abs=0.2)


def test_poisson_is_reproducible_from_its_seed() -> None:
    assert poisson(30, 10.0, seed=7) == poisson(30, 10.0, seed=7)
    assert poisson(30, 10.0, seed=7) != poisson(30, 10.0, seed=8)
    assert poisson(30, 10.0, seed=random.Random(7)) == poisson(30, 10.0, seed=7)


def test_even_ramp_sends_the_integrated_rate_with_shrinking_gaps() -> None:
    times = ramp(10, 50, 10.0)
    assert len(times) == 300  # (10 + 50) / 2 x 10
    gaps = [b - a for a, b in pairwise(times)]
    assert all(later < earlier for earlier, later in pairwise(gaps))
    # The gap at a moment is about 1 / the rate then.
    assert gaps[0] == pytest.approx(1 / 10, rel=0.05)
    assert gaps[-1] == pytest.approx(1 / 50, rel=0.05)


def test_even_ramp_from_zero_starts_at_zero_and_matches_the_integrated_rate() -> None:
    times = ramp(0, 100, 10.0)
    assert times[0] == 0.0
    # The rate integral up to t is 5 t^2: the k-th send is at sqrt(k / 5).
    assert times[1:4] == pytest.approx([math.sqrt(k / 5) for k in (1, 2, 3)])
    assert len(times) == 500


def test_poisson_ramp_density_increases_quarter_by_quarter() -> None:
    times = ramp(0, 200, 40.0, seed=4)
    counts = [count_between(times, q * 10, (q + 1) * 10) for q in range(4)]
    expected = [250, 750, 1250, 1750]  # the rate's integral over each quarter
    assert counts == sorted(counts)
    for got, want in zip(counts, expected, strict=True):
        assert abs(got - want) < 4 * math.sqrt(want)


def test_falling_ramp_ends_with_the_widest_gaps() -> None:
    times = ramp(50, 10, 10.0)
    gaps = [b - a for a, b in pairwise(times)]
    assert len(times) == 300
    assert gaps[0] < gaps[-1]


def test_flat_ramp_is_the_constant_rate() -> None:
    assert ramp(7, 7, 3.0) == pytest.approx(constant(7, 3.0))


def test_steps_hold_each_rate_until_the_next_start() -> None:
    times = steps([(0, 10), (1, 0), (2, 20)], 3.0)
    assert count_between(times, 0, 1) == 10
    assert count_between(times, 1, 2) == 0
    assert count_between(times, 2, 3) == 20
    assert 2.0 in times  # the new level starts right at its boundary
    assert len(times) == 30


def test_poisson_steps_count_each_level_within_bounds() -> None:
    times = steps([(0, 5), (100, 50)], 200.0, seed=5)
    assert abs(count_between(times, 0, 100) - 500) < 4 * math.sqrt(500)
    assert abs(count_between(times, 100, 200) - 5000) < 4 * math.sqrt(5000)


def test_burst_raises_the_rate_only_inside_its_window() -> None:
    times = burst(base_rate=2, burst_rate=20, start_s=5, length_s=2, duration_s=10.0)
    assert count_between(times, 0, 5) == 10
    assert count_between(times, 5, 7) == 40
    assert count_between(times, 7, 10) == 6


@pytest.mark.parametrize(
    ("levels", "duration", "message"),
    [
        ([], 10.0, "at least one"),
        ([(1, 5)], 10.0, "start at 0"),
        ([(0, 5), (3, 5), (3, 6)], 10.0, "increase"),
        ([(0, 5), (4, 5), (2, 6)], 10.0, "increase"),
        ([(0, 5), (10, 5)], 10.0, "before duration_s"),
        ([(0, -1)], 10.0, ">= 0"),
        ([(0, math.nan)], 10.0, ">= 0"),
    ],
)
def test_steps_reject_bad_levels(levels: list[tuple[float, float]], duration: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        steps(levels, duration)


@pytest.mark.parametrize("duration", [0.0, -1.0, math.inf, math.nan])
def test_schedules_reject_a_duration_that_is_not_positive_and_finite(duration: float) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        constant(1, duration)
    with pytest.raises(ValueError, match="duration_s"):
        poisson(1, duration)
    with pytest.raises(ValueError, match="duration_s"):
        ramp(1, 2, duration)


@pytest.mark.parametrize("rate", [-1.0, math.inf, math.nan])
def test_schedules_reject_a_rate_that_is_not_finite_and_non_negative(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        constant(rate, 1.0)
    with pytest.raises(ValueError, match="rate"):
        poisson(rate, 1.0)
    with pytest.raises(ValueError, match="end_rate"):
        ramp(1.0, rate, 1.0)


@pytest.mark.parametrize(("start", "length"), [(0.0, 2.0), (5.0, 0.0), (8.0, 2.0)])
def test_burst_must_lie_inside_the_run(start: float, length: float) -> None:
    with pytest.raises(ValueError):
        burst(1, 10, start, length, 10.0)


def test_times_in_seconds_become_sorted_offsets_from_the_first() -> None:
    assert parse_times(["12.5", "10", "11"]) == [0.0, 1.0, 2.5]


def test_times_in_milliseconds_are_converted_when_asked() -> None:
    assert parse_times(["0", "250", "1000"], unit="ms") == [0.0, 0.25, 1.0]


def test_epoch_milliseconds_are_recognised_without_a_unit() -> None:
    assert parse_times(["1764000000000", "1764000000500", "1764000002000"]) == [0.0, 0.5, 2.0]


@pytest.mark.parametrize(
    ("values", "unit", "message"),
    [
        ([], "auto", "no timestamps"),
        (["1", "soon"], "auto", "timestamp 2 is not a number"),
        (["1", ""], "auto", "timestamp 2 is not a number"),
        (["1", "nan"], "auto", "not finite"),
        (["1"], "minutes", "unit"),
    ],
)
def test_bad_timestamps_are_refused_with_the_reason(values: list[str], unit: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_times(values, unit=unit)  # type: ignore[arg-type]


def test_csv_text_gives_its_t_column_and_skips_blank_rows() -> None:
    text = "user,t\nann,3\n\nbob,1\n,\ncy,2\n"
    assert read_csv_times(text) == [0.0, 1.0, 2.0]


def test_csv_without_the_column_is_refused() -> None:
    with pytest.raises(ValueError, match="no column 't'"):
        read_csv_times("time\n1\n2\n")


def test_replay_reads_a_csv_file_in_seconds_or_milliseconds(tmp_path: Path) -> None:
    seconds = tmp_path / "seconds.csv"
    seconds.write_text("t\n0\n0.5\n2\n")
    millis = tmp_path / "millis.csv"
    millis.write_text("t\n0\n500\n2000\n")
    assert replay_csv(seconds) == [0.0, 0.5, 2.0]
    assert replay_csv(millis, unit="ms") == [0.0, 0.5, 2.0]
