"""The worker's model layer: Gemini through google-genai, an offline stand-in, and the router between them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp
import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

log = logging.getLogger(__name__)

ModelErrorKind = Literal["quota", "auth", "timeout", "unavailable", "bad_request", "other"]
RouterMode = Literal["auto", "gemini", "offline"]
ROUTER_MODES: tuple[RouterMode, ...] = ("auto", "gemini", "offline")

OFFLINE_MODEL_NAME = "offline"
NO_KEY_MESSAGE = "no Gemini API key configured"


@dataclass(frozen=True)
class Answer:
    """A model's answer to one question."""

    text: str
    model: str
    elapsed_ms: int


class ModelError(Exception):
    """A model call failed; `user_message` is safe to show the user and never holds an API key."""

    def __init__(self, user_message: str, kind: ModelErrorKind, *, status: int | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.kind: ModelErrorKind = kind
        self.status = status

    def __str__(self) -> str:
        return self.user_message

    def __repr__(self) -> str:
        return f"ModelError(kind={self.kind!r}, status={self.status!r}, user_message={self.user_message!r})"


class ApiKeyFileError(RuntimeError):
    """The configured API key file could not be read (the message names the file, never its content)."""


class Model(Protocol):
    """Anything that answers a question."""

    async def answer(self, query: str, *, api_key: str | None = None, model: str | None = None) -> Answer:
        """Answer `query`, optionally with a specific key and model."""
        ...


def load_api_key(env_key: str | None, key_file: str | None) -> str | None:
    """Return GEMINI_API_KEY if set, else the stripped content of GEMINI_API_KEY_FILE, else None."""
    if env_key and env_key.strip():
        return env_key.strip()
    if not key_file:
        return None
    try:
        with open(key_file, encoding="utf-8") as f:
            content = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        # Name the file and the reason only: the content (a secret) must never reach an error message.
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise ApiKeyFileError(f"cannot read GEMINI_API_KEY_FILE {key_file!r}: {reason}") from None
    # An empty file (e.g. a placeholder Docker secret) means "no key", so auto mode falls back to offline.
    return content or None


def _clean_key(key: str | None) -> str | None:
    """Return the key stripped, or None when it is missing or blank."""
    if key is None:
        return None
    return key.strip() or None


# --------------------------------------------------------------------------------------------- offline


_OFFLINE_SENTENCES: tuple[str, ...] = (
    "Set a Gemini API key to get a real answer.",
    "This reply was produced without contacting any AI service.",
    "The worker is running in offline mode, so this is a placeholder answer.",
    "A real model would have something more useful to say here.",
    "Offline answers are deterministic: the same question gets the same reply.",
    "Use this mode to test the system without spending any quota.",
)
_ECHO_CHARS = 200


def lognormal_params(mean: float, sd: float) -> tuple[float, float]:
    """Return (mu, sigma) of the normal underlying a lognormal with the given mean and standard deviation."""
    if mean <= 0 or sd < 0:
        raise ValueError(f"lognormal needs mean > 0 and sd >= 0, got mean={mean}, sd={sd}")
    sigma2 = math.log1p((sd / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


class OfflineModel:
    """A deterministic stand-in for Gemini with configurable (optionally lognormal) latency."""

    def __init__(self, mean_ms: float, sd_ms: float, seed: int | None = None) -> None:
        if mean_ms < 0 or sd_ms < 0:
            raise ValueError(f"offline latency must be >= 0, got mean={mean_ms} ms, sd={sd_ms} ms")
        if sd_ms > 0 and mean_ms == 0:
            raise ValueError("offline latency sd > 0 needs a mean > 0")
        self.mean_ms = mean_ms
        self.sd_ms = sd_ms
        self._rng = random.Random(seed)
        self._mu_sigma = lognormal_params(mean_ms, sd_ms) if sd_ms > 0 else None

    def sample_latency_ms(self) -> float:
        """Draw one latency in milliseconds: the mean when sd is 0, else lognormal(mean, sd)."""
        if self._mu_sigma is None:
            return self.mean_ms
        mu, sigma = self._mu_sigma
        return self._rng.lognormvariate(mu, sigma)

    @staticmethod
    def text_for(query: str) -> str:
        """Return the deterministic offline answer to `query`."""
        echo = " ".join(query.split())
        if len(echo) > _ECHO_CHARS:
            echo = echo[: _ECHO_CHARS - 1].rstrip() + "…"
        # sha256 rather than hash(): str hashes are salted per process, and the answer must be stable.
        digest = hashlib.sha256(query.encode("utf-8")).digest()
        sentence = _OFFLINE_SENTENCES[int.from_bytes(digest[:8], "big") % len(_OFFLINE_SENTENCES)]
        return f"[offline model] You asked: {echo}\n{sentence}"

    async def answer(self, query: str, *, api_key: str | None = None, model: str | None = None) -> Answer:
        """Answer after the simulated latency; `api_key` and `model` are ignored."""
        start = time.perf_counter()
        delay_ms = self.sample_latency_ms()
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        elapsed_ms = round((time.perf_counter() - start) * 1000)
        return Answer(text=self.text_for(query), model=OFFLINE_MODEL_NAME, elapsed_ms=elapsed_ms)


# ---------------------------------------------------------------------------------------------- gemini


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
        key = _clean_key(api_key)
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


# ---------------------------------------------------------------------------------------------- router


class ModelRouter:
    """Chooses Gemini or the offline model for each task according to the mode and the keys at hand."""

    def __init__(self, mode: str, gemini: GeminiModel, offline: OfflineModel, configured_key: str | None) -> None:
        if mode not in ROUTER_MODES:
            raise ValueError(f"MODEL_MODE must be one of {', '.join(ROUTER_MODES)}, got {mode!r}")
        self.mode = mode
        self.gemini = gemini
        self.offline = offline
        self._configured_key = _clean_key(configured_key)

    def choose(self, api_key: str | None) -> tuple[Model, str | None]:
        """Return the model to use for a task bringing `api_key`, and the key to give it."""
        if self.mode == "offline":
            return self.offline, None
        # The task's own key wins over the worker's: the user asked to spend their quota.
        key = _clean_key(api_key) or self._configured_key
        if key is None and self.mode == "auto":
            return self.offline, None
        return self.gemini, key

    async def answer(self, query: str, *, api_key: str | None = None, model: str | None = None) -> Answer:
        """Answer with the chosen model; in gemini mode without any key raise ModelError(kind="auth")."""
        chosen, key = self.choose(api_key)
        return await chosen.answer(query, api_key=key, model=model)

    async def aclose(self) -> None:
        """Release the Gemini clients."""
        await self.gemini.aclose()
