"""A local fake of the Gemini REST API that the real google-genai SDK can be pointed at through base_url.

It serves `POST /{v1|v1beta|v1alpha}/models/{model}:generateContent` (google-genai 3.6.1 uses `v1` and sends
the key in the `x-goog-api-key` header; a `?key=` query parameter is accepted too). The API key picks the
behaviour, either exactly or as a prefix followed by "-" (so "fake-quota-7" behaves like "fake-quota"):

| key | answer |
|---|---|
| fake-quota | 429 RESOURCE_EXHAUSTED |
| fake-bad | 400 INVALID_ARGUMENT "API key not valid. Please pass a valid API key." (API_KEY_INVALID) |
| fake-slow | waits `slow_seconds` (default 60), then answers normally |
| fake-5xx | 503 UNAVAILABLE |
| fake-blocked | 200 with no candidates and promptFeedback.blockReason SAFETY |
| fake-empty | 200 with one candidate without text, finishReason SAFETY |
| (none) | 403 PERMISSION_DENIED, as Google answers unregistered callers |
| anything else | 200 with the text "fake-gemini answer to: <query>" |

Use it in-process (`async with FakeGemini() as base_url`), from sync code in a thread (`with FakeGeminiThread()
as base_url`), or as a process: `python -m tests.fakes.gemini --port N` prints "listening on http://127.0.0.1:N".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
API_VERSIONS = ("v1", "v1beta", "v1alpha")
METHOD_SUFFIX = ":generateContent"
ANSWER_PREFIX = "fake-gemini answer to: "
BEHAVIOURS = ("fake-quota", "fake-bad", "fake-slow", "fake-5xx", "fake-blocked", "fake-empty")


@dataclass(frozen=True)
class RecordedRequest:
    """One generateContent call as the fake received it."""

    api_version: str
    model: str
    api_key: str
    text: str
    user_agent: str
    url: str = ""  # path and query string as requested (a key belongs in the header, not here)


def behaviour_of(key: str) -> str:
    """Return the behaviour name a key selects ("ok" for ordinary keys)."""
    for name in BEHAVIOURS:
        if key == name or key.startswith(name + "-"):
            return name
    return "ok"


def google_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    """Return an error response in Google's JSON error format."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=code)


def _quota_error(model: str) -> web.Response:
    """Return the 429 that Gemini sends when a free-tier quota is used up."""
    return google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "10",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"},
        ],
    )


def _bad_key_error() -> web.Response:
    """Return the 400 that Gemini sends for an invalid API key."""
    message = "API key not valid. Please pass a valid API key."
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
        ],
    )


def _usage(prompt: str, answer: str) -> dict[str, Any]:
    """Return a plausible usageMetadata (one token per word)."""
    prompt_tokens, answer_tokens = max(1, len(prompt.split())), len(answer.split())
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": answer_tokens,
        "totalTokenCount": prompt_tokens + answer_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }


def _query_text(body: Any) -> str | None:
    """Return the text of the last content in a generateContent body, or None if the body is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("contents"), list) or not body["contents"]:
        return None
    last = body["contents"][-1]
    parts = last.get("parts") if isinstance(last, dict) else None
    if not isinstance(parts, list):
        return None
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


class FakeGemini:
    """The fake Gemini server on the current event loop."""

    def __init__(self, *, port: int = 0, slow_seconds: float = 60.0) -> None:
        self.port = port
        self.slow_seconds = slow_seconds
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._served = 0

    @property
    def base_url(self) -> str:
        """Return the URL to give the SDK as base_url (only valid once started)."""
        if self._runner is None:
            raise RuntimeError("FakeGemini is not started")
        return f"http://{HOST}:{self.port}"

    async def start(self) -> str:
        """Start listening on 127.0.0.1 and return the base URL."""
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown timeout: stop() must not wait for "slow" requests.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self.port)
        await site.start()
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        """Release slow requests and stop listening."""
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request: generateContent, or Google's 404 for anything else."""
        version, _, rest = request.path.lstrip("/").partition("/")
        if (
            request.method != "POST"
            or version not in API_VERSIONS
            or not rest.startswith("models/")
            or not rest.endswith(METHOD_SUFFIX)
        ):
            return google_error(404, "NOT_FOUND", f"Method not found: {request.method} {request.path}")
        model = rest[len("models/") : -len(METHOD_SUFFIX)]
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        try:
            text = _query_text(await request.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            text = None
        if text is None:
            return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        self.requests.append(
            RecordedRequest(version, model, key, text, request.headers.get("User-Agent", ""), str(request.rel_url))
        )
        return await self._respond(model, key, text)

    async def _respond(self, model: str, key: str, text: str) -> web.Response:
        """Return the answer the key asks for."""
        if not key:
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        behaviour = behaviour_of(key)
        if behaviour == "fake-quota":
            return _quota_error(model)
        if behaviour == "fake-bad":
            return _bad_key_error()
        if behaviour == "fake-5xx":
            return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if behaviour == "fake-slow" and self._stopping is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.slow_seconds)
        self._served += 1
        body: dict[str, Any] = {"modelVersion": model, "responseId": f"fake-{self._served}"}
        if behaviour == "fake-blocked":
            body["promptFeedback"] = {"blockReason": "SAFETY"}
            body["usageMetadata"] = _usage(text, "")
        elif behaviour == "fake-empty":
            body["candidates"] = [{"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0}]
            body["usageMetadata"] = _usage(text, "")
        else:
            answer = ANSWER_PREFIX + text
            body["candidates"] = [
                {"content": {"parts": [{"text": answer}], "role": "model"}, "finishReason": "STOP", "index": 0}
            ]
            body["usageMetadata"] = _usage(text, answer)
        return web.json_response(body)


class FakeGeminiThread:
    """The fake Gemini server on its own event loop in a daemon thread, for sync code and subprocesses."""

    def __init__(self, *, port: int = 0, slow_seconds: float = 60.0) -> None:
        self.fake = FakeGemini(port=port, slow_seconds=slow_seconds)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-gemini", daemon=True)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return the requests received so far."""
        return self.fake.requests

    @property
    def base_url(self) -> str:
        """Return the URL to give the SDK as base_url."""
        return self.fake.base_url

    def start(self) -> str:
        """Start the thread and the server; return the base URL."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        """Stop the server and the thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _serve(port: int, slow_seconds: float) -> None:
    """Run the fake until SIGINT or SIGTERM."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers before the "listening" line: a parent may signal as soon as it reads it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    fake = FakeGemini(port=port, slow_seconds=slow_seconds)
    base_url = await fake.start()
    print(f"listening on {base_url}", flush=True)
    try:
        await done.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: run the fake on 127.0.0.1."""
    parser = argparse.ArgumentParser(description="Fake Gemini REST API for tests (binds 127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--slow-seconds", type=float, default=60.0, help="delay of the fake-slow key")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.slow_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
