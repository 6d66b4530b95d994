"""The worker id convention: `<language>-worker-<short random>`, built and read only here."""

from __future__ import annotations

import secrets

SEPARATOR = "-worker-"


def make_worker_id(language: str) -> str:
    """A new baseline-style worker id, e.g. `python-worker-3f9a1c` (6 random hex digits)."""
    if not language or SEPARATOR in language:
        raise ValueError(f"invalid worker language {language!r}")
    return f"{language}{SEPARATOR}{secrets.token_hex(3)}"


def worker_language(worker_id: str) -> str | None:
    """The language a worker id names, or None when it does not follow the convention."""
    language, sep, _ = worker_id.partition(SEPARATOR)
    return language if sep and language else None
