"""Errors raised while reading the wire."""

from __future__ import annotations


class DecodeError(ValueError):
    """A payload could not be read as the expected message; `raw` keeps what arrived."""

    def __init__(self, kind: str, reason: str, raw: bytes | str | object = b"") -> None:
        super().__init__(f"invalid {kind}: {reason}")
        self.kind = kind
        self.reason = reason
        self.raw = raw
