"""Tests of GeminiModel and ModelRouter: the real google-genai SDK against the local fake Gemini."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.worker import gemini as gemini_module
from services.worker.gemini import GeminiModel
from services.worker.models import (
    NO_KEY_MESSAGE,
    ApiKeyFileError,
    ModelError,
    ModelRouter,
    OfflineModel,
    load_api_key,
)
from tests.fakes.gemini import ANSWER_PREFIX, FakeGemini, FakeGeminiThread

# google-genai subclasses aiohttp.ClientSession, which aiohttp deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

MODEL = "gemini-test-model"
TIMEOUT_S = 1.0


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's aiohttp session trusts the environment: an HTTP(S)_PROXY would swallow calls to the fake.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    server = FakeGemini(slow_seconds=30)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gemini(fake: FakeGemini) -> AsyncIterator[GeminiModel]:
    model = GeminiModel(default_model=MODEL, base_url=fake.base_url, timeout_s=TIMEOUT_S)
    yield model
    await model.aclose()


async def _error(gemini: GeminiModel, key: str) -> ModelError:
    with pytest.raises(ModelError) as info:
        await gemini.answer("Why is the sky blue?", api_key=key)
    return info.value


async def test_success_returns_text_and_model(gemini: GeminiModel, fake: FakeGemini) -> None:
    answer = await gemini.answer("Why is the sky blue?", api_key="user-key-1")
    assert answer.text == ANSWER_PREFIX + "Why is the sky blue?"
    assert answer.model == MODEL
    assert answer.elapsed_ms >= 0
    [sent] = fake.requests
    assert (sent.model, sent.api_key, sent.text) == (MODEL, "user-key-1", "Why is the sky blue?")
    assert sent.user_agent.startswith("google-genai-sdk/")


async def test_model_can_be_chosen_per_call(gemini: GeminiModel, fake: FakeGemini) -> None:
    answer = await gemini.answer("hi", api_key="k", model="gemini-other")
    assert answer.model == "gemini-other"
    assert fake.requests[-1].model == "gemini-other"


async def test_quota_exceeded(gemini: GeminiModel) -> None:
    err = await _error(gemini, "fake-quota")
    assert (err.kind, err.status) == ("quota", 429)
    assert "quota" in err.user_message and "429" in err.user_message


async def test_bad_key(gemini: GeminiModel) -> None:
    err = await _error(gemini, "fake-bad")
    assert (err.kind, err.status) == ("auth", 400)
    assert "API key" in err.user_message


async def test_server_error_is_unavailable(gemini: GeminiModel, fake: FakeGemini) -> None:
    err = await _error(gemini, "fake-5xx")
    assert (err.kind, err.status) == ("unavailable", 503)
    # No SDK retries: exactly one request reached the server.
    assert len(fake.requests) == 1


async def test_slow_answer_times_out_on_time(gemini: GeminiModel) -> None:
    start = time.monotonic()
    err = await _error(gemini, "fake-slow")
    elapsed = time.monotonic() - start
    assert err.kind == "timeout"
    assert "within 1 s" in err.user_message
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 1.0


async def test_blocked_and_empty_answers_are_errors(gemini: GeminiModel) -> None:
    blocked = await _error(gemini, "fake-blocked")
    assert blocked.kind == "bad_request" and "SAFETY" in blocked.user_message
    empty = await _error(gemini, "fake-empty")
    assert empty.kind == "other" and "empty" in empty.user_message


async def test_unreachable_server_is_unavailable() -> None:
    # Port 9 (discard) on localhost is closed in test environments: the connection is refused at once.
    model = GeminiModel(default_model=MODEL, base_url="http://127.0.0.1:9", timeout_s=TIMEOUT_S)
    start = time.monotonic()
    with pytest.raises(ModelError) as info:
        await model.answer("hi", api_key="k")
    await model.aclose()
    assert info.value.kind == "unavailable"
    # The SDK's implicit retry (a 1-10 s sleep) must be off.
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("key", ["fake-quota-SECRET123", "fake-bad-SECRET123", "fake-5xx-SECRET123"])
async def test_key_never_appears_in_errors(gemini: GeminiModel, key: str) -> None:
    err = await _error(gemini, key)
    for text in (str(err), repr(err), err.user_message, str(err.args)):
        assert "SECRET123" not in text
    assert err.__cause__ is None and err.__suppress_context__


async def test_gemini_without_key_is_an_auth_error(gemini: GeminiModel, fake: FakeGemini) -> None:
    err = await _error(gemini, "  ")
    assert (err.kind, err.user_message) == ("auth", NO_KEY_MESSAGE)
    assert fake.requests == []


async def test_clients_are_reused_per_key(gemini: GeminiModel, fake: FakeGemini) -> None:
    for key in ("a", "b", "a"):
        await gemini.answer("q", api_key=key)
    assert [r.api_key for r in fake.requests] == ["a", "b", "a"]
    assert len(gemini._clients) == 2


async def test_client_cache_is_bounded(gemini: GeminiModel, fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemini_module, "_CLIENT_CACHE_SIZE", 2)
    for key in ("a", "b", "c", "a"):
        answer = await gemini.answer("q", api_key=key)
        assert answer.text == ANSWER_PREFIX + "q"
    assert len(gemini._clients) == 2
    assert [r.api_key for r in fake.requests] == ["a", "b", "c", "a"]


def _router(mode: str, gemini: GeminiModel, configured_key: str | None) -> ModelRouter:
    return ModelRouter(mode, lambda: gemini, OfflineModel(0, 0), configured_key)


async def test_auto_router_prefers_the_task_key(gemini: GeminiModel, fake: FakeGemini) -> None:
    router = _router("auto", gemini, "worker-key")
    answer = await router.answer("hello", api_key="task-key")
    assert answer.model == MODEL
    assert fake.requests[-1].api_key == "task-key"
    await router.answer("hello", api_key="")
    assert fake.requests[-1].api_key == "worker-key"


async def test_auto_router_without_any_key_is_offline(gemini: GeminiModel, fake: FakeGemini) -> None:
    answer = await _router("auto", gemini, None).answer("hello", api_key=None)
    assert answer.model == "offline" and answer.text.startswith("[offline model]")
    assert fake.requests == []


async def test_gemini_mode_without_key_fails(gemini: GeminiModel) -> None:
    with pytest.raises(ModelError) as info:
        await _router("gemini", gemini, None).answer("hello")
    assert (info.value.kind, info.value.user_message) == ("auth", NO_KEY_MESSAGE)


async def test_offline_mode_ignores_keys(gemini: GeminiModel, fake: FakeGemini) -> None:
    answer = await _router("offline", gemini, "worker-key").answer("hello", api_key="task-key")
    assert answer.model == "offline"
    assert fake.requests == []


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="MODEL_MODE"):
        ModelRouter("cloud", lambda: GeminiModel(MODEL, None, 1), OfflineModel(0, 0), None)


async def test_router_makes_gemini_only_for_a_task_that_needs_it(gemini: GeminiModel) -> None:
    made: list[GeminiModel] = []

    def make() -> GeminiModel:
        made.append(gemini)
        return gemini

    router = ModelRouter("auto", make, OfflineModel(0, 0), None)
    assert router.may_use_gemini and not ModelRouter("offline", make, OfflineModel(0, 0), None).may_use_gemini
    await router.answer("offline, no key anywhere")
    assert made == []
    await router.answer("with the user's key", api_key="user-key")
    await router.answer("again", api_key="user-key")
    assert made == [gemini]  # made once, then kept


def test_a_worker_starts_without_importing_google_genai() -> None:
    # What `python -m services.worker` imports before its first Gemini task: google-genai is ~0.5 s of a
    # worker's start (`lab bench registration`), loaded afterwards beside the event loop.
    code = (
        "import sys, services.worker.__main__, services.worker.runner, services.worker.models; "
        "print(sorted(m for m in sys.modules if m.startswith(('google.genai', 'aiohttp', 'httpx'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_load_api_key(tmp_path: Path) -> None:
    key_file = tmp_path / "gemini_api_key"
    key_file.write_text("file-key\n")
    assert load_api_key("env-key", str(key_file)) == "env-key"
    assert load_api_key("", str(key_file)) == "file-key"
    assert load_api_key(None, str(key_file)) == "file-key"
    assert load_api_key(None, None) is None
    key_file.write_text("  \n")
    assert load_api_key(None, str(key_file)) is None


def test_unreadable_key_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    with pytest.raises(ApiKeyFileError, match="no-such-file"):
        load_api_key(None, str(missing))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfeSECRET")
    with pytest.raises(ApiKeyFileError) as info:
        load_api_key(None, str(binary))
    assert "SECRET" not in str(info.value)


def test_thread_fake_serves_sync_callers() -> None:
    from google import genai
    from google.genai import types

    with FakeGeminiThread() as base_url:
        client = genai.Client(api_key="sync-key", http_options=types.HttpOptions(base_url=base_url))
        response = client.models.generate_content(model=MODEL, contents="sync?")
        client.close()
    assert response.text == ANSWER_PREFIX + "sync?"
