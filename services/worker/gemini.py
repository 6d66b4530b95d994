"""Gemini through the google-genai SDK, with every failure mapped to a readable ModelError."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import aiohttp
import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from services.worker.models import NO_KEY_MESSAGE, Answer, ModelError, clean_key

log = logging.getLogger(__name__)


def _timeout_types() -> tuple[type[BaseException], ...]:
    """Return the timeout exceptions of every HTTP stack google-genai may use."""
    # aiohttp's timeouts subclass asyncio.TimeoutError; httpx's and httpx2's do not.
    found: list[type[BaseException]] = [asyncio.TimeoutError, TimeoutError, httpx.TimeoutException]
    try:
        import httpx2  # optional SDK backend

        found.append(httpx2.TimeoutException)
    except (ImportError, AttributeError):
        pass
    return tuple(found)


def _network_types() -> tuple[type[BaseException], ...]:
    """Return the connection-level exceptions of every HTTP stack google-genai may use."""
    found: list[type[BaseException]] = [aiohttp.ClientError, httpx.TransportError, ConnectionError]
    try:
        import httpx2

        found.append(httpx2.TransportError)
    except (ImportError, AttributeError):
        pass
    return tuple(found)


_TIMEOUT_ERRORS = _timeout_types()
_NETWORK_ERRORS = _network_types()
# Substrings (lower case) that mark a 400/403 as being about the key rather than the request.
_KEY_MARKERS = ("api key", "api_key", "apikey", "unregistered callers", "credential")
_KEY_STATUSES = ("UNAUTHENTICATED", "PERMISSION_DENIED")
_DETAIL_CHARS = 300
_CLIENT_CACHE_SIZE = 32


def _redact(text: str, secret: str | None) -> str:
    """Return `text` with every occurrence of `secret` replaced."""
    return text.replace(secret, "[redacted]") if secret else text


def _short(text: str) -> str:
    """Return `text` on one line, cut to a readable length."""
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


def _is_key_problem(err: genai_errors.APIError) -> bool:
    """Tell whether a 4xx from Gemini is about the API key (rather than the request)."""
    if err.code == 401 or (err.status or "") in _KEY_STATUSES:
        return True
    haystack = f"{err.message or ''} {err.details!r}".lower()
    return any(marker in haystack for marker in _KEY_MARKERS)


def _map_api_error(err: genai_errors.APIError, model: str, key: str) -> ModelError:
    """Translate an HTTP error answer from Gemini into a ModelError."""
    code = err.code
    said = _short(_redact(err.message or err.status or "", key))
    if code == 429:
        return ModelError("Gemini quota exceeded (429): try again later or use your own API key", "quota", status=code)
    if code in (400, 401, 403) and _is_key_problem(err):
        return ModelError(f"Gemini rejected the API key ({code})", "auth", status=code)
    if code == 404:
        return ModelError(f"Gemini does not offer the model {model!r} (404)", "bad_request", status=code)
    if code in (408, 504):
        return ModelError(f"Gemini timed out ({code}): try again later", "timeout", status=code)
    if 500 <= code < 600:
        return ModelError(f"Gemini is unavailable ({code}): try again later", "unavailable", status=code)
    if 400 <= code < 500:
        suffix = f": {said}" if said else ""
        return ModelError(f"Gemini rejected the request ({code}){suffix}", "bad_request", status=code)
    return ModelError(f"Gemini answered with an unexpected status ({code})", "other", status=code)


def _answer_text(response: genai_types.GenerateContentResponse) -> str:
    """Return the response's text, or raise a ModelError when Gemini gave none (e.g. a safety block)."""
    text = response.text
    if text and text.strip():
        return text
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = getattr(feedback.block_reason, "value", str(feedback.block_reason))
        raise ModelError(f"Gemini refused to answer this question (blocked: {reason})", "bad_request")
    finish = response.candidates[0].finish_reason if response.candidates else None
    reason = getattr(finish, "value", None) or "unknown"
    raise ModelError(f"Gemini returned an empty answer (finish reason: {reason})", "other")


@dataclass
class _CachedClient:
    """A genai.Client with the number of calls using it, so eviction never closes it under a call."""

    client: genai.Client
    users: int = 0
    evicted: bool = False


class GeminiModel:
    """Answers with Gemini through google-genai, mapping every failure to a readable ModelError."""

    def __init__(self, default_model: str, base_url: str | None, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"Gemini timeout must be > 0 s, got {timeout_s}")
        self.default_model = default_model
        self.base_url = base_url or None
        self.timeout_s = timeout_s
        # Keyed by a digest, not the key itself, so the cache can be inspected without showing keys.
        self._clients: OrderedDict[str, _CachedClient] = OrderedDict()

    def _http_options(self) -> genai_types.HttpOptions:
        """Return the SDK options: our base URL, the timeout (in ms!) and no retries."""
        return genai_types.HttpOptions(
            base_url=self.base_url,
            timeout=max(1, math.ceil(self.timeout_s * 1000)),
            # attempts=1: no tenacity retries, and setting retry_options at all also turns off the SDK's
            # implicit "sleep 1-10 s and retry once" on connection errors, which would break our timeout.
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )

    async def _acquire(self, key: str) -> _CachedClient:
        """Return the cached client for `key` (creating it, evicting the least recently used)."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        entry = self._clients.get(digest)
        if entry is None:
            # enterprise=False: never let GOOGLE_GENAI_USE_VERTEXAI & co. send the call to Vertex AI.
            client = genai.Client(enterprise=False, api_key=key, http_options=self._http_options())
            entry = _CachedClient(client)
            self._clients[digest] = entry
            while len(self._clients) > _CLIENT_CACHE_SIZE:
                _, old = self._clients.popitem(last=False)
                old.evicted = True
                if old.users == 0:
                    await self._close(old)
        else:
            self._clients.move_to_end(digest)
        entry.users += 1
        return entry

    async def _release(self, entry: _CachedClient) -> None:
        """Mark one call done; close the client if it was evicted meanwhile."""
        entry.users -= 1
        if entry.evicted and entry.users == 0:
            await self._close(entry)

    @staticmethod
    async def _close(entry: _CachedClient) -> None:
        """Close a client's connections, ignoring errors (closing is best effort)."""
        try:
            await entry.client.aio.aclose()
        except Exception as e:  # pragma: no cover - depends on the SDK's internals
            log.debug("closing a Gemini client failed: %s", type(e).__name__)

    async def aclose(self) -> None:
        """Close every cached client."""
        entries = list(self._clients.values())
        self._clients.clear()
        for entry in entries:
            entry.evicted = True
            if entry.users == 0:
                await self._close(entry)

    async def answer(self, query: str, *, api_key: str | None = None, model: str | None = None) -> Answer:
        """Ask Gemini `query` with `api_key`; raise ModelError on any failure."""
        key = clean_key(api_key)
        if key is None:
            raise ModelError(NO_KEY_MESSAGE, "auth")
        model_name = model or self.default_model
        entry = await self._acquire(key)
        start = time.perf_counter()
        try:
            # wait_for is a belt over the SDK's own timeout, with a little slack so the SDK's fires first.
            response = await asyncio.wait_for(
                entry.client.aio.models.generate_content(model=model_name, contents=query),
                timeout=self.timeout_s + 0.5,
            )
            text = _answer_text(response)
        except ModelError:
            raise
        except genai_errors.APIError as e:
            raise self._logged(_map_api_error(e, model_name, key), e, key) from None
        except _TIMEOUT_ERRORS as e:
            err = ModelError(f"Gemini did not answer within {self.timeout_s:g} s", "timeout")
            raise self._logged(err, e, key) from None
        except _NETWORK_ERRORS as e:
            raise self._logged(ModelError("could not reach Gemini: try again later", "unavailable"), e, key) from None
        except ValueError as e:
            # The SDK validates arguments (e.g. the model name) before sending anything.
            err = ModelError(f"invalid Gemini request: {_short(_redact(str(e), key))}", "bad_request")
            raise self._logged(err, e, key) from None
        except Exception as e:
            err = ModelError(f"Gemini call failed ({type(e).__name__})", "other")
            raise self._logged(err, e, key) from None
        finally:
            await self._release(entry)
        elapsed_ms = round((time.perf_counter() - start) * 1000)
        return Answer(text=text, model=model_name, elapsed_ms=elapsed_ms)

    @staticmethod
    def _logged(err: ModelError, cause: BaseException, key: str) -> ModelError:
        """Log a failed call (without the key) and return `err`."""
        # `from None` at the raise sites keeps SDK exceptions (which hold the request) out of tracebacks.
        log.warning(
            "Gemini call failed: kind=%s status=%s cause=%s: %s",
            err.kind,
            err.status,
            type(cause).__name__,
            _short(_redact(str(cause), key)),
        )
        return err
