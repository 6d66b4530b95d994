"""Reading settings from environment variables, with errors that name the variable."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

from services.protocol.topics import Topics

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def env_bool(value: str | None, default: bool) -> bool:
    """Read a boolean: 1/true/yes/on or 0/false/no/off (any case); empty means the default."""
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


class Env:
    """Typed reads of one environment mapping; a bad value is a ValueError that names the variable."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    def text(self, name: str, default: str) -> str:
        """A string; empty or unset means the default."""
        return self._env.get(name, "").strip() or default

    def optional(self, name: str) -> str | None:
        """A string or None when empty or unset."""
        return self._env.get(name, "").strip() or None

    def secret(self, name: str) -> str | None:
        """A secret given directly (`NAME`) or, as Docker secrets are, in a file (`NAME_FILE`)."""
        direct = self.optional(name)
        path = self.optional(f"{name}_FILE")
        if direct is not None or path is None:
            return direct
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError as e:
            raise ValueError(f"{name}_FILE: cannot read {path} ({e.strerror})") from None

    def existing_file(self, name: str) -> str | None:
        """A path that must name a readable file, or None when unset."""
        path = self.optional(name)
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{name}: no such file {path}")
        return path

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        """A finite number, at least `minimum`."""
        raw = self._env.get(name, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {raw!r}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        """A whole number within [minimum, maximum]."""
        raw = self._env.get(name, "").strip()
        try:
            value = int(raw) if raw else default
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"{name} must be {bound}, got {raw!r}")
        return value

    def port(self, name: str, default: int) -> int:
        """A TCP port (0 is not a valid port to connect to or to advertise)."""
        return self.integer(name, default, 1, 65535)

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean (see `env_bool`)."""
        try:
            return env_bool(self._env.get(name), default)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        """One of `options` (case-insensitive)."""
        value = self.text(name, default).lower()
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        return value

    def topic_prefix(self, name: str, default: str) -> str:
        """An MQTT topic prefix without wildcards."""
        value = self.text(name, default)
        try:
            Topics(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        return value

    def matching(self, name: str, default: str, pattern: str, what: str) -> str:
        """A string that matches `pattern` (described as `what` in the error)."""
        value = self.text(name, default)
        if value and not re.fullmatch(pattern, value):
            raise ValueError(f"{name} must be {what}, got {value!r}")
        return value
