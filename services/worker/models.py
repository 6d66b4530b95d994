"""The worker's model layer: what a model is, the offline stand-in, and the router between it and Gemini
(`services.worker.gemini`, imported only when a task may need it: google-genai takes ~0.5 s to import)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

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


class ClosableModel(Model, Protocol):
    """A model holding connections to release at the end."""

    async def aclose(self) -> None:
        """Release the model's connections."""
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


def clean_key(key: str | None) -> str | None:
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


# ---------------------------------------------------------------------------------------------- router


class ModelRouter:
    """Chooses Gemini or the offline model for each task according to the mode and the keys at hand."""

    def __init__(
        self, mode: str, make_gemini: Callable[[], ClosableModel], offline: OfflineModel, configured_key: str | None
    ) -> None:
        if mode not in ROUTER_MODES:
            raise ValueError(f"MODEL_MODE must be one of {', '.join(ROUTER_MODES)}, got {mode!r}")
        self.mode = mode
        self._make_gemini = make_gemini
        self._gemini: ClosableModel | None = None  # made on first use
        self.offline = offline
        self._configured_key = clean_key(configured_key)

    @property
    def may_use_gemini(self) -> bool:
        """Whether a task may go to Gemini: in every mode but offline (in auto mode a user's key brings
        Gemini even to a worker without a key of its own)."""
        return self.mode != "offline"

    def choose(self, api_key: str | None) -> tuple[Model, str | None]:
        """Return the model to use for a task bringing `api_key`, and the key to give it."""
        if self.mode == "offline":
            return self.offline, None
        # The task's own key wins over the worker's: the user asked to spend their quota.
        key = clean_key(api_key) or self._configured_key
        if key is None and self.mode == "auto":
            return self.offline, None
        if self._gemini is None:
            self._gemini = self._make_gemini()
        return self._gemini, key

    async def answer(self, query: str, *, api_key: str | None = None, model: str | None = None) -> Answer:
        """Answer with the chosen model; in gemini mode without any key raise ModelError(kind="auth")."""
        chosen, key = self.choose(api_key)
        return await chosen.answer(query, api_key=key, model=model)

    async def aclose(self) -> None:
        """Release the Gemini clients, if Gemini was used."""
        if self._gemini is not None:
            await self._gemini.aclose()
