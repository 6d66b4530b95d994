"""Tests of the queueing model: Erlang C, the M/G/c approximation, wait percentiles and the KPI notes."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from lab.analysis.queueing import (
    MGC_MODEL,
    MMC_MODEL,
    capacity_per_s,
    erlang_c,
    kpi_contradictions,
    max_utilization_for_mean_response,
    mgc,
    mmc,
    prob_wait_exceeds_mmc,
    service_stats,
    utilization,
    wait_percentile_mmc,
)


def erlang_c_by_textbook_formula(servers: int, offered_load: Fraction) -> Fraction:
    """Erlang C from its closed form, in exact rational arithmetic so that large c cannot overflow."""
    a, c = offered_load, servers
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
def test_single_server_waits_with_probability_rho_and_mean_rho_over_drain_rate(rho: float) -> None:
    service_rate = 2.0
    arrival = rho * service_rate
    prediction = mmc(arrival, 1 / service_rate, 1)
    assert erlang_c(1, rho) == pytest.approx(rho)
    assert prediction.p_wait == pytest.approx(rho)
    assert prediction.mean_wait_s == pytest.approx(rho / (service_rate - arrival))
    assert prediction.utilization == pytest.approx(rho)


def test_two_servers_at_half_load_wait_one_third_of_the_time_for_one_third_of_a_second() -> None:
    # By hand: a = 1, B(1) = 1/2, B(2) = (1/2)/(2 + 1/2) = 1/5, C = B / (1 - rho(1 - B)) = (1/5)/(3/5) = 1/3;
    # Wq = C / (cμ - λ) = (1/3) / (2 - 1) = 1/3 s.
    prediction = mmc(1.0, 1.0, 2)
    assert prediction.p_wait == pytest.approx(1 / 3)
    assert prediction.mean_wait_s == pytest.approx(1 / 3)
    assert prediction.mean_response_s == pytest.approx(4 / 3)
    assert prediction.utilization == pytest.approx(0.5)
    assert prediction.model == MMC_MODEL


@pytest.mark.parametrize(("servers", "load"), [(3, "2"), (6, "4.5"), (10, "8"), (25, "20.5"), (100, "90")])
def test_erlang_c_matches_the_closed_form(servers: int, load: str) -> None:
    expected = erlang_c_by_textbook_formula(servers, Fraction(load))
    assert erlang_c(servers, float(load)) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize(("servers", "load"), [(100, 99.5), (300, 290.0), (1000, 900.0), (500, 1.0)])
def test_many_servers_give_a_probability_without_overflow(servers: int, load: float) -> None:
    probability = erlang_c(servers, load)
    assert math.isfinite(probability)
    assert 0 <= probability <= 1


def test_waiting_gets_rarer_with_more_servers_at_the_same_utilization() -> None:
    chances = [erlang_c(c, 0.8 * c) for c in (1, 2, 5, 20, 100)]
    assert chances == sorted(chances, reverse=True)
    assert chances[0] == pytest.approx(0.8)


def test_no_load_means_no_wait() -> None:
    prediction = mmc(0.0, 10.0, 4)
    assert prediction.p_wait == 0
    assert prediction.mean_wait_s == 0
    assert prediction.mean_response_s == 10.0
    assert prediction.mean_queue_length == 0


@pytest.mark.parametrize("load", [4.0, 4.5, 100.0])
def test_unstable_load_is_refused_with_the_utilization(load: float) -> None:
    with pytest.raises(ValueError, match=r"unstable.*utilization"):
        erlang_c(4, load)


def test_unstable_arrival_rate_is_refused_by_every_model() -> None:
    arrival, service, servers = 0.6, 10.0, 6  # rho = 0.6·10/6 = 1
    with pytest.raises(ValueError, match="unstable"):
        mmc(arrival, service, servers)
    with pytest.raises(ValueError, match="unstable"):
        mgc(arrival, service, 0.5, servers)
    with pytest.raises(ValueError, match="unstable"):
        wait_percentile_mmc(0.9, arrival, service, servers)


@pytest.mark.parametrize(("servers", "load"), [(0, 0.5), (2, -0.1), (2, math.nan)])
def test_nonsense_inputs_are_refused(servers: int, load: float) -> None:
    with pytest.raises(ValueError):
        erlang_c(servers, load)


def test_capacity_and_utilization_follow_from_rate_and_service_time() -> None:
    assert capacity_per_s(6, 12.0) == pytest.approx(0.5)
    assert utilization(0.375, 12.0, 6) == pytest.approx(0.75)
    assert utilization(1.0, 12.0, 6) == pytest.approx(2.0)


@pytest.mark.parametrize(("arrival", "service", "servers"), [(0.5, 1.0, 1), (0.375, 12.0, 6), (9.0, 10.0, 100)])
def test_mgc_with_exponential_service_is_mmc(arrival: float, service: float, servers: int) -> None:
    exact = mmc(arrival, service, servers)
    approx = mgc(arrival, service, 1.0, servers)
    assert approx.mean_wait_s == pytest.approx(exact.mean_wait_s)
    assert approx.p_wait == pytest.approx(exact.p_wait)
    assert approx.model == MGC_MODEL


@pytest.mark.parametrize(("arrival", "service", "servers"), [(0.5, 1.0, 1), (0.375, 12.0, 6), (9.0, 10.0, 100)])
def test_mgc_with_fixed_service_halves_the_mmc_wait(arrival: float, service: float, servers: int) -> None:
    fixed = mgc(arrival, service, 0.0, servers)
    assert fixed.mean_wait_s == pytest.approx(mmc(arrival, service, servers).mean_wait_s / 2)
    assert fixed.mean_response_s == pytest.approx(fixed.mean_wait_s + service)
    assert fixed.service_cv2 == 0


@pytest.mark.parametrize("cv2", [0.0, 0.25, 1.0, 4.0])
def test_mgc_with_one_server_is_pollaczek_khinchine(cv2: float) -> None:
    arrival, service = 0.06, 10.0
    rho = arrival * service
    expected = rho * service * (1 + cv2) / (2 * (1 - rho))
    assert mgc(arrival, service, cv2, 1).mean_wait_s == pytest.approx(expected)


def test_queue_length_obeys_littles_law() -> None:
    prediction = mgc(0.375, 12.0, 0.3, 6)
    assert prediction.mean_queue_length == pytest.approx(0.375 * prediction.mean_wait_s)


def test_service_stats_give_mean_and_sample_cv2() -> None:
    mean, cv2 = service_stats([8.0, 10.0, 12.0, 10.0])
    # Sample variance: (4 + 0 + 4 + 0) / 3 = 8/3; cv² = (8/3) / 10² = 2/75.
    assert mean == pytest.approx(10.0)
    assert cv2 == pytest.approx(2 / 75)


def test_identical_service_times_have_no_variability() -> None:
    assert service_stats([10.0] * 5) == (10.0, 0.0)


@pytest.mark.parametrize("times", [[], [10.0], [0.0, 0.0], [5.0, -1.0]])
def test_service_stats_refuse_samples_that_say_nothing(times: list[float]) -> None:
    with pytest.raises(ValueError):
        service_stats(times)


def test_wait_percentile_of_single_server_matches_the_closed_form() -> None:
    # λ = 0.5, μ = 1: C = 0.5, drain rate 0.5, so t90 = ln(0.5 / 0.1) / 0.5 = 2 ln 5.
    assert wait_percentile_mmc(0.9, 0.5, 1.0, 1) == pytest.approx(2 * math.log(5))


@pytest.mark.parametrize("p", [0.7, 0.9, 0.95, 0.99])
def test_wait_percentile_leaves_the_rest_of_the_tasks_waiting_longer(p: float) -> None:
    arrival, service, servers = 0.375, 12.0, 6
    t = wait_percentile_mmc(p, arrival, service, servers)
    assert t > 0
    assert prob_wait_exceeds_mmc(t, arrival, service, servers) == pytest.approx(1 - p)


def test_percentiles_below_the_share_that_never_waits_are_zero() -> None:
    arrival, service, servers = 0.375, 12.0, 6
    never_wait = 1 - mmc(arrival, service, servers).p_wait
    assert wait_percentile_mmc(never_wait * 0.99, arrival, service, servers) == 0
    assert wait_percentile_mmc(0.0, arrival, service, servers) == 0
    assert wait_percentile_mmc(never_wait + 0.01, arrival, service, servers) > 0


def test_probability_of_waiting_longer_than_zero_is_erlang_c() -> None:
    assert prob_wait_exceeds_mmc(0.0, 0.375, 12.0, 6) == pytest.approx(erlang_c(6, 4.5))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_wait_percentile_refuses_fractions_outside_0_to_1(p: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        wait_percentile_mmc(p, 0.5, 1.0, 1)


@pytest.mark.parametrize("cv2", [0.0, 1.0])
def test_max_utilization_puts_the_mean_response_on_the_target(cv2: float) -> None:
    rho = max_utilization_for_mean_response(6, 12.0, 15.0, cv2)
    capacity = capacity_per_s(6, 12.0)
    assert 0 < rho < 1
    assert mgc(rho * capacity, 12.0, cv2, 6).mean_response_s == pytest.approx(15.0)


def test_max_utilization_is_zero_when_service_alone_misses_the_target() -> None:
    assert max_utilization_for_mean_response(6, 16.0, 15.0) == 0.0


def test_kpi_notes_give_17_percent_busy_for_10_second_tasks() -> None:
    notes = kpi_contradictions(6, 10.0)
    assert "utilization 17%" in notes[0]
    assert "70-80%" in notes[0]
    assert "42-48 s" in notes[0]


def test_kpi_notes_give_20_percent_busy_for_12_second_tasks() -> None:
    assert "utilization 20%" in kpi_contradictions(4, 12.0)[0]


def test_kpi_notes_predict_the_wait_at_75_percent_that_breaks_15_seconds() -> None:
    notes = kpi_contradictions(6, 12.0)
    prediction = mmc(0.75 * capacity_per_s(6, 12.0), 12.0, 6)
    text = " ".join(notes)
    assert f"mean wait is {prediction.mean_wait_s:.1f} s" in text
    assert f"mean response {prediction.mean_response_s:.1f} s, which breaks" in text
    assert "leaves 3 s" in text


def test_kpi_notes_say_when_service_alone_breaks_the_latency_target() -> None:
    notes = kpi_contradictions(6, 16.0)
    assert len(notes) == 2
    assert "already exceeds" in notes[1]


def test_kpi_notes_say_within_when_the_throughput_kpi_meets_the_busy_target() -> None:
    assert "within the" in kpi_contradictions(6, 45.0, latency_target_s=60.0)[0]
