"""Tests of the autoscaler's pure decision: latency and band targets, backlog, clamps, stabilization, cooldown."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest

from services.autoscaler.policy import Decision, Observation, Policy, PolicySettings, response_quantile
from services.autoscaler.queueing import mgc

pytestmark = pytest.mark.unit

SERVICE_S = 10.0
CV2 = 0.0  # the simulated work of 10 s: a service time that hardly varies
# A latency target the band binds before (a p95 within 15 s at 10 s of work needs more workers than 80 % busy
# leaves idle at these fleets): for the tests of the band, the hysteresis and the noise.
LOOSE_LATENCY = 30.0


def observe(
    at_s: float,
    rate: float,
    workers: int,
    *,
    busy: int = 0,
    queued: int = 0,
    service_s: float | None = SERVICE_S,
    starting: int = 0,
    cv2: float = CV2,
) -> Observation:
    return Observation(
        at_s=at_s,
        workers=workers,
        busy=busy,
        queued=queued,
        arrival_rate_per_s=rate,
        service_time_s=service_s,
        service_cv2=cv2,
        starting=starting,
    )


def meets_latency(rate: float, workers: int, settings: PolicySettings, service_s: float = SERVICE_S) -> bool:
    """Whether the predicted p95 response at this many workers is stable and within the target."""
    response = response_quantile(settings.latency_percentile, rate, service_s, CV2, workers)
    return response is not None and response <= settings.latency_target_s


def follow(policy: Policy, loads: Iterable[tuple[float, float]], workers: int) -> list[Decision]:
    """Decisions for (time, rate) pairs when the fleet becomes each target at once (an instant actuator)."""
    decisions = []
    for at_s, rate in loads:
        decision = policy.decide(observe(at_s, rate, workers, busy=min(workers, round(rate * SERVICE_S))))
        assert len(decision.reason) <= 500  # the master's ScalingReport takes at most 500 characters
        decisions.append(decision)
        workers = decision.target
    return decisions


def test_steady_load_stays_put_despite_noise_and_a_queued_task_now_and_then() -> None:
    policy = Policy(PolicySettings(latency_target_s=LOOSE_LATENCY))
    first = policy.decide(observe(0, 0.42, 6, busy=4))
    assert first.direction == "hold"
    for step in range(1, 120):
        # The measured rate wobbles and a snapshot now and then catches one task waiting.
        rate = (0.40, 0.42, 0.44)[step % 3]
        decision = policy.decide(observe(2.0 * step, rate, 6, busy=min(6, 4 + step % 3), queued=int(step % 7 == 0)))
        assert (decision.direction, decision.target) == ("hold", 6), decision.reason
    assert first.reason.startswith("0.42/s x 10 s = 4.2 busy on average; 6 workers: utilization 70%")


def test_a_step_up_scales_up_at_once_to_the_fewest_workers_meeting_latency_and_band() -> None:
    settings = PolicySettings(max_workers=20)
    policy = Policy(settings)
    before = follow(policy, [(2.0 * i, 0.2) for i in range(10)], workers=4)
    assert {d.direction for d in before} == {"hold"}

    step = policy.decide(observe(20.0, 0.6, 4, busy=4, queued=2))

    assert step.direction == "up"
    target = step.target
    assert meets_latency(0.6, target, settings)
    assert settings.utilization_low <= step.utilization <= settings.utilization_high
    # One fewer would miss the latency target or push utilization over the band.
    assert not meets_latency(0.6, target - 1, settings) or 0.6 * SERVICE_S / (target - 1) > settings.utilization_high
    assert step.predicted_wait_s is not None
    assert step.predicted_wait_s + SERVICE_S <= settings.latency_target_s
    assert step.reason.startswith(f"0.6/s x 10 s = 6 busy on average, 2 queued; {target} workers: utilization")


def test_a_step_down_holds_inside_the_window_and_scales_down_after_it() -> None:
    settings = PolicySettings(scale_down_window_s=60, cooldown_s=10)
    policy = Policy(settings)
    assert policy.decide(observe(0, 0.6, 8, busy=6)).direction == "hold"

    inside = [policy.decide(observe(t, 0.2, 8, busy=2)) for t in range(2, 60, 2)]
    assert {(d.direction, d.target) for d in inside} == {("hold", 8)}
    assert "8 were recommended within the last 60 s" in inside[-1].reason

    after = policy.decide(observe(61, 0.2, 8, busy=2))
    assert after.direction == "down"
    assert after.target == 4  # 0.2/s x 10 s = 2 busy: 4 is the fewest whose p95 wait fits in 15 - 10 s
    assert meets_latency(0.2, after.target, settings) and not meets_latency(0.2, after.target - 1, settings)
    assert "below the 70-80% band because the latency target needs 4" in after.reason


def test_flapping_load_scales_up_once_and_never_down_up_down() -> None:
    policy = Policy(PolicySettings(max_workers=20))
    # High and low every 4 s for five minutes, decided every 2 s.
    loads = [(2.0 * i, 0.6 if (i // 2) % 2 else 0.1) for i in range(150)]
    decisions = follow(policy, loads, workers=3)  # what 0.1/s needs
    changes = [d.direction for d in decisions if d.direction != "hold"]
    assert changes == ["up"]
    assert decisions[-1].target == 8


def test_load_below_the_window_after_flapping_ends_scales_down_once() -> None:
    policy = Policy(PolicySettings(max_workers=20))
    flapping = [(2.0 * i, 0.6 if (i // 2) % 2 else 0.1) for i in range(60)]
    calm = [(120 + 2.0 * i, 0.1) for i in range(60)]
    decisions = follow(policy, flapping + calm, workers=3)
    changes = [(d.at_s, d.direction, d.target) for d in decisions if d.direction != "hold"]
    # The last high reading was at t = 118 (i = 59 is high); the window lets go of it 60 s later.
    assert changes == [(4.0, "up", 8), (180.0, "down", 3)]


def test_cooldown_holds_a_second_change_and_says_how_long_is_left() -> None:
    policy = Policy(PolicySettings(cooldown_s=10, max_workers=20))
    assert policy.decide(observe(0, 0.3, 2, busy=2)).target == 5
    during = policy.decide(observe(4, 0.6, 5, busy=5))
    assert (during.direction, during.target) == ("hold", 5)
    assert during.reason.startswith("cooldown, 6.0s left: would go up to 8; ")
    after = policy.decide(observe(10, 0.6, 5, busy=5))
    assert (after.direction, after.target) == ("up", 8)


def test_the_maximum_caps_the_target_and_says_the_latency_target_is_not_met() -> None:
    policy = Policy(PolicySettings(max_workers=4))
    decision = policy.decide(observe(0, 1.0, 2, busy=2, queued=5))
    assert (decision.direction, decision.target) == ("up", 4)
    assert decision.utilization == pytest.approx(2.5)
    assert decision.predicted_wait_s is None
    assert "the queue grows, capped at the maximum: the latency target needs more than 4" in decision.reason


def test_the_minimum_holds_workers_that_light_load_does_not_need() -> None:
    policy = Policy(PolicySettings(min_workers=3))
    decision = policy.decide(observe(0, 0.01, 5))
    assert (decision.direction, decision.target) == ("down", 3)
    assert decision.utilization == pytest.approx(0.1 / 3)
    assert "below the 70-80% band because the minimum is 3" in decision.reason


def test_service_time_at_or_over_the_target_goes_to_the_maximum_and_says_why() -> None:
    policy = Policy(PolicySettings(max_workers=6))
    decision = policy.decide(observe(0, 0.05, 1, service_s=20.0))
    assert (decision.direction, decision.target) == ("up", 6)
    assert "the service alone (20 s) reaches the 15 s target, so no fleet meets it" in decision.reason


def test_with_minimum_zero_an_idle_fleet_goes_to_zero_after_the_window() -> None:
    policy = Policy(PolicySettings(min_workers=0, scale_down_window_s=60, cooldown_s=10))
    assert policy.decide(observe(0, 0.01, 1)).target == 1
    assert policy.decide(observe(30, 0.0, 1)).direction == "hold"
    gone = policy.decide(observe(61, 0.0, 1))
    assert (gone.direction, gone.target) == ("down", 0)
    assert gone.utilization == 0.0 and gone.predicted_wait_s is None
    assert gone.reason == "nothing arriving or queued, 0 busy; 0 workers (minimum 0)"


def test_with_minimum_zero_a_queued_question_starts_one_worker_even_in_cooldown() -> None:
    policy = Policy(PolicySettings(min_workers=0, scale_down_window_s=0, cooldown_s=30))
    assert policy.decide(observe(0, 0.0, 1)).target == 0
    # Two seconds after scaling to zero, well inside the cooldown, a question waits with no one to answer it.
    first = policy.decide(observe(2, 0.0, 0, queued=1, service_s=None))
    assert (first.direction, first.target) == ("up", 1)
    assert "(assumed)" in first.reason
    # The worker it asked for is starting: nothing more to do.
    assert policy.decide(observe(4, 0.0, 0, queued=1, service_s=None, starting=1)).direction == "hold"


def test_a_scale_down_never_takes_busy_workers() -> None:
    policy = Policy(PolicySettings(scale_down_window_s=0, cooldown_s=0))
    decision = policy.decide(observe(0, 0.05, 8, busy=7))
    assert (decision.direction, decision.target) == ("down", 7)
    assert "because busy workers need 7" in decision.reason
    # Even above the maximum: the idle ones may go, the busy ones stay.
    over = Policy(PolicySettings(max_workers=4)).decide(observe(0, 0.0, 6, busy=6))
    assert (over.direction, over.target) == ("hold", 6)


def test_a_backlog_raises_the_target_beyond_what_the_rate_alone_needs() -> None:
    settings = PolicySettings(max_workers=30)
    quiet = Policy(settings).decide(observe(0, 0.3, 5, busy=3))
    backlog = Policy(settings).decide(observe(0, 0.3, 5, busy=5, queued=10))
    assert quiet.target == 5
    # 10 queued behind 5 busy, 10 s each, to start within 15 - 10 = 5 s: (10 + 5) x 10 / 15 = 10 workers;
    # with 9, the 6th to 10th start as workers finish, the last after (10 - 4) x 10 / 9 = 6.7 s > 5 s.
    assert (backlog.direction, backlog.target) == ("up", 10)
    assert "because the backlog needs 10" in backlog.reason
    # A longer budget lets the queue wait for workers to finish: (40 + 5) x 10 / 60 = 7.5.
    relaxed = PolicySettings(max_workers=30, latency_target_s=60)
    assert Policy(relaxed).decide(observe(0, 0.3, 5, busy=5, queued=40)).target == 8


def test_a_queue_the_model_expects_at_steady_load_adds_no_worker() -> None:
    # 4.2 busy on average in 6 workers: with all six busy, one to three waiting is ordinary (M/M/c expects 2.3).
    policy = Policy(PolicySettings(latency_target_s=LOOSE_LATENCY))
    for step, queued in enumerate((0, 1, 2, 3, 1, 0)):
        decision = policy.decide(observe(2.0 * step, 0.42, 6, busy=6 if queued else 4, queued=queued))
        assert (decision.direction, decision.target) == ("hold", 6), decision.reason


def test_starting_workers_count_towards_the_fleet() -> None:
    policy = Policy(PolicySettings(max_workers=20))
    decision = policy.decide(observe(0, 0.6, 5, busy=5, starting=3))
    assert (decision.current, decision.target, decision.direction, decision.change) == (8, 8, "hold", 0)


def test_the_same_observations_give_the_same_decisions() -> None:
    loads = [(2.0 * i, 0.05 * (i % 13)) for i in range(200)]
    first = follow(Policy(PolicySettings(max_workers=20)), loads, workers=1)
    second = follow(Policy(PolicySettings(max_workers=20)), loads, workers=1)
    assert [(d.target, d.reason) for d in first] == [(d.target, d.reason) for d in second]


def test_memory_of_recommendations_stays_bounded() -> None:
    policy = Policy(PolicySettings(max_workers=10, scale_down_window_s=1e6))
    for i in range(5000):
        policy.decide(observe(i * 0.01, 0.01 * (i % 97), 1))
    # Only recommendations that can still be the window's highest are kept: at most one per target.
    assert len(policy._recent) <= 11


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_workers": -1}, "min_workers must be a whole number >= 0"),
        ({"max_workers": 0}, "max_workers must be a whole number >= 1"),
        ({"min_workers": 5, "max_workers": 4}, r"min_workers \(5\) must not exceed max_workers \(4\)"),
        ({"latency_target_s": 0.0}, "latency_target_s must be a positive finite number"),
        ({"latency_target_s": math.inf}, "latency_target_s must be a positive finite number"),
        ({"utilization_low": 0.9, "utilization_high": 0.8}, "0 < utilization_low < utilization_high < 1"),
        ({"utilization_high": 1.0}, "0 < utilization_low < utilization_high < 1"),
        ({"scale_down_window_s": -1.0}, "scale_down_window_s must be a non-negative finite number"),
        ({"cooldown_s": math.nan}, "cooldown_s must be a non-negative finite number"),
        ({"default_service_s": 0.0}, "default_service_s must be a positive finite number"),
        ({"max_workers": True}, "max_workers must be a whole number"),
    ],
)
def test_invalid_settings_are_refused_with_a_clear_message(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicySettings(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"busy": 3}, r"busy \(3\) cannot exceed workers \(2\)"),
        ({"queued": -1}, "queued must be a whole number >= 0"),
        ({"arrival_rate_per_s": -0.1}, "arrival_rate_per_s must be a non-negative finite number"),
        ({"service_time_s": 0.0}, "service_time_s must be a positive finite number"),
        ({"service_cv2": math.inf}, "service_cv2 must be a non-negative finite number"),
    ],
)
def test_invalid_observations_are_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "at_s": 0.0,
        "workers": 2,
        "busy": 1,
        "queued": 0,
        "arrival_rate_per_s": 0.1,
        "service_time_s": 10.0,
    }
    with pytest.raises(ValueError, match=message):
        Observation(**(fields | changes))  # type: ignore[arg-type]


def test_observations_out_of_time_order_are_refused() -> None:
    policy = Policy(PolicySettings())
    policy.decide(observe(10, 0.1, 2))
    with pytest.raises(ValueError, match="older than the previous one"):
        policy.decide(observe(9, 0.1, 2))


@pytest.mark.parametrize(("current", "target"), [(12, 15), (15, 15), (16, 16), (17, 17), (20, 17)])
def test_inside_the_band_the_fleet_stays_and_outside_it_moves_the_least_into_it(current: int, target: int) -> None:
    # 1.2/s x 10 s = 12 busy: 15 workers are 80% busy, 17 are 71%; latency needs fewer than 15.
    settings = PolicySettings(max_workers=30, scale_down_window_s=0, cooldown_s=0, latency_target_s=LOOSE_LATENCY)
    assert meets_latency(1.2, 14, settings)
    decision = Policy(settings).decide(observe(0, 1.2, current, busy=min(current, 12)))
    assert decision.target == target
    assert settings.utilization_low <= decision.utilization <= settings.utilization_high


def test_the_fleet_is_sized_for_the_p95_of_latency_not_its_mean() -> None:
    # 0.42/s x 10 s = 4.2 busy: at 6 workers the mean response is within 15 s but one task in twenty waits
    # longer than the 5 s left: the KPI judges the p95, so the target is 7.
    settings = PolicySettings()
    assert mgc(0.42, SERVICE_S, CV2, 6).mean_response_s <= settings.latency_target_s
    assert not meets_latency(0.42, 6, settings) and meets_latency(0.42, 7, settings)
    decision = Policy(settings).decide(observe(0, 0.42, 6, busy=4))
    assert (decision.direction, decision.target) == ("up", 7)
    assert "p95 response" in decision.reason and "because the latency target needs 7" in decision.reason
    # A service that varies more makes waits longer: more workers for the same load (0.6/s: 8, then 9).
    steady = Policy(settings).decide(observe(0, 0.6, 6, busy=6))
    varied = Policy(settings).decide(observe(0, 0.6, 6, busy=6, cv2=1.0))
    assert (steady.target, varied.target) == (8, 9)
