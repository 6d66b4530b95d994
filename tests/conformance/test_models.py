"""Conformance cases 5-7: which key and model a worker gives Gemini, how each Gemini failure reaches the
user, and what a worker without a key does (the fake Gemini REST API, one shared system)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from lab.loadgen.client import ChatClient
from services.worker.models import OfflineModel
from tests.conformance.asking import TRACE_MARKERS, answer_of, ask
from tests.conformance.conftest import GEMINI_TIMEOUT_SECONDS, Stack
from tests.fakes.gemini import ANSWER_PREFIX, RecordedRequest

DEFAULT_MODEL = "gemini-flash-latest"


def request_for(stack: Stack, text: str) -> RecordedRequest:
    """The one request the fake Gemini received for the question `text`."""
    found = [r for r in stack.fake.requests if r.text == text]
    assert len(found) == 1, f"{len(found)} Gemini requests for {text!r}"
    return found[0]


async def test_05_task_key_and_model_win_and_the_key_travels_in_a_header(stack: Stack, tmp_path: Path) -> None:
    """Case 5: the task's key beats GEMINI_API_KEY, which beats GEMINI_API_KEY_FILE; the task's model beats
    GEMINI_MODEL (default `gemini-flash-latest`); the key reaches Gemini in a header, never in the URL."""
    tag = uuid.uuid4().hex[:8]
    env_key, file_key, task_key = f"fake-ok-env-{tag}", f"fake-ok-file-{tag}", f"fake-ok-task-{tag}"
    key_file = tmp_path / "gemini.key"
    key_file.write_text(f"{file_key}\n")
    both = stack.worker({"GEMINI_API_KEY": env_key, "GEMINI_API_KEY_FILE": str(key_file), "GEMINI_MODEL": "model-env"})
    cases = [  # (key in the task, model in the task) -> (key used, model used)
        ((task_key, "model-task"), (task_key, "model-task")),
        ((task_key, None), (task_key, "model-env")),
        ((None, "model-task"), (env_key, "model-task")),
        ((None, None), (env_key, "model-env")),
    ]
    async with ChatClient(stack.cluster.web_url) as user:
        for i, ((key, model), (want_key, want_model)) in enumerate(cases):
            query = f"precedence {tag} {i}"
            answer = await answer_of(await ask(user, query, api_key=key, model=model))
            assert answer.workerId == both.worker_id
            assert (answer.response, answer.model, answer.error) == (ANSWER_PREFIX + query, want_model, "")
            request = request_for(stack, query)
            assert (request.api_key, request.model) == (want_key, want_model), (i, request)
            assert want_key not in request.url and "key=" not in request.url, request.url
        stack.cluster.stop_worker(both.worker_id)
        file_only = stack.worker({"GEMINI_API_KEY_FILE": str(key_file)})
        query = f"precedence {tag} file"
        answer = await answer_of(await ask(user, query))
    assert answer.workerId == file_only.worker_id and answer.response == ANSWER_PREFIX + query
    request = request_for(stack, query)
    assert (request.api_key, request.model) == (file_key, DEFAULT_MODEL)
    assert file_key not in request.url


# Per fake key: words the user's error message must contain (any of them), case-insensitive.
GEMINI_FAILURES = {
    "fake-quota": ("quota",),
    "fake-bad": ("key",),
    "fake-5xx": ("unavailable", "overloaded"),
    "fake-blocked": ("blocked",),
    "fake-empty": ("empty", "no answer", "no text"),
    "fake-slow": ("within", "timed out", "timeout"),
}


async def test_06_each_gemini_failure_is_a_readable_error_and_the_worker_goes_on(stack: Stack) -> None:
    """Case 6: quota (429), a bad key (400), 5xx, a blocked prompt, an empty answer and a Gemini slower than
    GEMINI_TIMEOUT_SECONDS each give an error result that says what happened, without the key, a URL or a
    trace, the slow one within the timeout (not the lease); the next question is answered normally."""
    secret = uuid.uuid4().hex
    worker = stack.worker()
    errors: dict[str, str] = {}
    async with ChatClient(stack.cluster.web_url) as user:
        for kind in GEMINI_FAILURES:
            started = time.monotonic()
            answer = await answer_of(await ask(user, f"make {kind} happen", api_key=f"{kind}-{secret}"))
            took = time.monotonic() - started
            assert answer.workerId == worker.worker_id
            errors[kind] = answer.error
            assert answer.error, f"{kind}: no error, response {answer.response!r}"
            if kind == "fake-slow":
                assert took < GEMINI_TIMEOUT_SECONDS + 3, f"the slow model took {took:.1f} s to give up"
        after = await answer_of(await ask(user, "still alive?", api_key=f"fake-ok-{secret}"))
    assert after.workerId == worker.worker_id
    assert (after.response, after.error) == (ANSWER_PREFIX + "still alive?", "")
    for kind, error in errors.items():
        calls = sum(r.api_key == f"{kind}-{secret}" for r in stack.fake.requests)
        assert any(word in error.lower() for word in GEMINI_FAILURES[kind]), f"{kind}: {error!r} ({calls} calls)"
        assert secret not in error and stack.fake.base_url.split("//")[1] not in error, f"{kind}: {error!r}"
        assert not [m for m in TRACE_MARKERS if m in error], f"{kind}: {error!r}"
        assert len(error) <= 300 and "\n" not in error, f"{kind}: {error!r}"
    assert worker.process.alive


async def test_07_without_a_key_gemini_mode_fails_and_auto_mode_answers_offline(stack: Stack) -> None:
    """Case 7: a worker with no key at all answers with an error that says so in MODEL_MODE=gemini, and
    with the offline model in MODEL_MODE=auto."""
    gemini = stack.worker({"MODEL_MODE": "gemini"})
    async with ChatClient(stack.cluster.web_url) as user:
        failed = await answer_of(await ask(user, "gemini without a key"))
        assert failed.workerId == gemini.worker_id
        assert failed.error and "key" in failed.error.lower(), failed.error
        stack.cluster.stop_worker(gemini.worker_id)
        auto = stack.worker({"MODEL_MODE": "auto"})
        offline = await answer_of(await ask(user, "auto without a key"))
    assert offline.workerId == auto.worker_id
    assert (offline.response, offline.model, offline.error) == (
        OfflineModel.text_for("auto without a key"),
        "offline",
        "",
    )
