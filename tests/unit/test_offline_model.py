"""Tests of the offline model: deterministic text and the latency distribution."""

from __future__ import annotations

import math
import statistics

import pytest

from services.worker.models import OFFLINE_MODEL_NAME, OfflineModel, lognormal_params


async def test_same_query_gives_same_answer_and_says_offline() -> None:
    first = await OfflineModel(0, 0).answer("What is MQTT?")
    second = await OfflineModel(0, 0, seed=99).answer("What is MQTT?", api_key="ignored", model="ignored")
    assert first.text == second.text
    assert first.text.startswith("[offline model] You asked: What is MQTT?")
    assert first.model == second.model == OFFLINE_MODEL_NAME
    assert first.elapsed_ms >= 0


def test_answer_text_depends_on_the_query_only() -> None:
    texts = {OfflineModel.text_for(f"question {i}") for i in range(50)}
    # Each text echoes its question; the appended sentences vary with the hash.
    assert len(texts) == 50
    assert len({t.split("\n", 1)[1] for t in texts}) > 1


def test_long_question_is_truncated_in_the_echo() -> None:
    text = OfflineModel.text_for("word " * 1000)
    assert len(text) < 400
    assert "…" in text


def test_fixed_latency_when_sd_is_zero() -> None:
    model = OfflineModel(mean_ms=250, sd_ms=0)
    assert {model.sample_latency_ms() for _ in range(100)} == {250}


def test_lognormal_params_give_the_requested_moments() -> None:
    mu, sigma = lognormal_params(200, 50)
    assert math.exp(mu + sigma**2 / 2) == pytest.approx(200)
    assert math.sqrt((math.exp(sigma**2) - 1) * math.exp(2 * mu + sigma**2)) == pytest.approx(50)


@pytest.mark.parametrize(("mean", "sd"), [(200.0, 50.0), (1000.0, 1500.0), (10.0, 1.0)])
def test_lognormal_samples_have_the_configured_mean_and_sd(mean: float, sd: float) -> None:
    model = OfflineModel(mean_ms=mean, sd_ms=sd, seed=1234)
    samples = [model.sample_latency_ms() for _ in range(200_000)]
    assert min(samples) > 0
    assert statistics.fmean(samples) == pytest.approx(mean, rel=0.03)
    # Heavy tails (sd > mean) make the sample sd converge slowly, hence the looser bound.
    assert statistics.pstdev(samples) == pytest.approx(sd, rel=0.03 if sd < mean else 0.15)


def test_seeded_models_draw_the_same_latencies() -> None:
    a, b = OfflineModel(100, 30, seed=7), OfflineModel(100, 30, seed=7)
    assert [a.sample_latency_ms() for _ in range(10)] == [b.sample_latency_ms() for _ in range(10)]


async def test_answer_sleeps_about_the_sampled_latency() -> None:
    answer = await OfflineModel(mean_ms=50, sd_ms=0).answer("hi")
    assert 45 <= answer.elapsed_ms < 500


@pytest.mark.parametrize(("mean", "sd"), [(-1, 0), (0, -1), (0, 10)])
def test_invalid_latency_settings_are_refused(mean: float, sd: float) -> None:
    with pytest.raises(ValueError):
        OfflineModel(mean, sd)
