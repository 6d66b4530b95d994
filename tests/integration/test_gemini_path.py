"""Real workers call the fake Gemini REST API through google-genai; every failure reaches the user readably."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from lab.loadgen.client import ChatClient
from tests.conftest import ClusterFactory
from tests.fakes.gemini import ANSWER_PREFIX, FakeGeminiThread


@pytest.fixture
def fake_gemini() -> Iterator[FakeGeminiThread]:
    fake = FakeGeminiThread(slow_seconds=30)
    fake.start()
    yield fake
    fake.stop()


async def test_gemini_answers_and_errors_reach_the_user(
    cluster_factory: ClusterFactory, fake_gemini: FakeGeminiThread
) -> None:
    lines: list[str] = []
    cluster = cluster_factory(
        workers=2,
        work_seconds=0.1,
        model_mode="auto",
        extra_env={
            "GEMINI_BASE_URL": fake_gemini.base_url,
            "GEMINI_TIMEOUT_SECONDS": "1",
            "GEMINI_MODEL": "gemini-test-flash",
            "NO_PROXY": "127.0.0.1,localhost",
        },
        log_sink=lambda name, line: lines.append(f"{name} | {line}"),
    )
    cases = {
        "fake-ok-s3cr3t1": ANSWER_PREFIX + "what is MQTT?",
        "fake-quota-s3cr3t2": "quota",
        "fake-bad-s3cr3t3": "API key",
        "fake-slow-s3cr3t4": "did not answer within",
        "fake-5xx-s3cr3t5": "unavailable",
    }
    async with ChatClient(cluster.web_url) as user:
        asked = {key: await user.ask("what is MQTT?", api_key=key) for key in cases}
        await user.wait_answers(len(cases), timeout=30)
        # Workers survived every failure: one more question is answered normally.
        after = await user.ask("still alive?", api_key="fake-ok-s3cr3t6")
        await user.wait_answers(len(cases) + 1, timeout=15)
    for key, expected in cases.items():
        answer = asked[key].answer
        assert answer is not None
        if key.startswith("fake-ok"):
            assert answer.response == expected and answer.error == ""
            assert answer.model == "gemini-test-flash"
        else:
            assert answer.error and expected.lower() in answer.error.lower(), (key, answer.error)
            assert answer.response == answer.error
    assert after.answer and after.answer.response.startswith(ANSWER_PREFIX)
    seen = {(r.api_key, r.model) for r in fake_gemini.requests}
    assert ("fake-ok-s3cr3t1", "gemini-test-flash") in seen
    await asyncio.sleep(0.2)  # on purpose: the processes' last log lines reach the sink
    # Keys reach Gemini and nothing else: no log line of any process mentions one.
    assert lines and not [line for line in lines if "s3cr3t" in line]


async def test_worker_key_from_a_file_is_used_when_the_user_brings_none(
    cluster_factory: ClusterFactory, fake_gemini: FakeGeminiThread, tmp_path: object
) -> None:
    from pathlib import Path

    key_file = Path(str(tmp_path)) / "gemini_api_key"
    key_file.write_text("fake-ok-fromfile\n")
    cluster = cluster_factory(
        workers=1,
        work_seconds=0.0,
        model_mode="auto",
        extra_env={
            "GEMINI_BASE_URL": fake_gemini.base_url,
            "GEMINI_API_KEY_FILE": str(key_file),
            "NO_PROXY": "127.0.0.1,localhost",
        },
    )
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("who pays for this?")
        await user.wait_answers(1, timeout=15)
    assert asked.answer and asked.answer.response == ANSWER_PREFIX + "who pays for this?"
    assert [r.api_key for r in fake_gemini.requests] == ["fake-ok-fromfile"]
