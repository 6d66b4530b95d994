"""Workers in three languages on one contract, and fleets that mix them: `python=2,go=2,java=2`.

A worker kind knows how to start a worker of its language and whether it can here (the Go and Java workers
are built by `make workers`). A fleet is how many of each kind, in a fixed order; a bare number is Python.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.paths import REPO_ROOT
from services.protocol.worker_ids import make_worker_id

__all__ = [
    "LANGUAGES",
    "Fleet",
    "FleetSpec",
    "WorkerKind",
    "WorkerUnavailableError",
    "fleet_size",
    "fleet_text",
    "parse_fleet",
    "spawn_order",
    "worker_kind",
]

LANGUAGES = ("python", "go", "java")
"""The worker languages, in the order a mixed fleet is listed and started."""

Fleet = tuple[tuple[str, int], ...]
"""A normalized fleet: (language, count) pairs in LANGUAGES order, counts > 0."""

FleetSpec = int | str | Mapping[str, int] | Fleet
"""What a user may give for a fleet: 4 (Python), "python=2,go=2", {"go": 2} or a Fleet."""

_BUILD_HINT = "run `make workers` (it needs Go 1.26+ and JDK 17 with Maven; `make setup` installs them)"


class WorkerUnavailableError(RuntimeError):
    """A worker kind that cannot be started on this machine, with what to do about it."""


@dataclass(frozen=True)
class WorkerKind:
    """How to start a worker of one language: `argv` (extra arguments such as `--check` go after it) and
    the file that must exist first, if any. `LAB_WORKER_<LANGUAGE>` (a shell-quoted command) overrides the
    command, for a worker built elsewhere."""

    language: str
    argv: tuple[str, ...]
    needs: Path | None = None

    def command(self, *extra: str) -> list[str]:
        """The command line that starts this worker, with `extra` arguments."""
        return [*self.argv, *extra]

    def problem(self) -> str | None:
        """Why this kind cannot start here, or None when it can."""
        if self.needs is not None and not self.needs.exists():
            return f"the {self.language} worker is not built ({self.needs} is missing): {_BUILD_HINT}"
        return None

    def require(self) -> None:
        """Raise WorkerUnavailableError when this kind cannot start here."""
        if (problem := self.problem()) is not None:
            raise WorkerUnavailableError(problem)

    def new_id(self) -> str:
        """A fresh worker id of this language, e.g. `go-worker-3f9a1c`."""
        return make_worker_id(self.language)


def worker_kind(language: str, environ: Mapping[str, str] | None = None) -> WorkerKind:
    """The worker kind of `language` (one of LANGUAGES)."""
    env = os.environ if environ is None else environ
    if language not in LANGUAGES:
        raise ValueError(f"unknown worker language {language!r}; known: {', '.join(LANGUAGES)}")
    override = env.get(f"LAB_WORKER_{language.upper()}", "").strip()
    if override:
        return WorkerKind(language, tuple(shlex.split(override)))
    if language == "python":
        return WorkerKind(language, (sys.executable, "-m", "services.worker"))
    if language == "go":
        binary = REPO_ROOT / "services" / "worker-go" / "bin" / "worker-go"
        return WorkerKind(language, (str(binary),), needs=binary)
    home = REPO_ROOT / "services" / "worker-java"
    return WorkerKind(language, (str(home / "worker-java"),), needs=home / "target" / "worker-java.jar")


_PAIR = re.compile(r"\s*([a-z]+)\s*[=:]\s*(\d+)\s*")


def parse_fleet(spec: FleetSpec) -> Fleet:
    """A fleet from a number (Python workers), `"python=2,go=2,java=2"` or a mapping; ValueError on nonsense."""
    if isinstance(spec, bool):
        raise ValueError(f"a fleet is a number or language=count pairs, got {spec!r}")
    if isinstance(spec, int):
        counts: dict[str, int] = {"python": spec}
    elif isinstance(spec, str):
        counts = _parse_text(spec)
    else:
        counts = {}
        for language, count in spec.items() if isinstance(spec, Mapping) else spec:
            counts[language] = counts.get(language, 0) + int(count)
    for language, count in counts.items():
        if language not in LANGUAGES:
            raise ValueError(f"unknown worker language {language!r}; known: {', '.join(LANGUAGES)}")
        if count < 0:
            raise ValueError(f"a number of {language} workers must be >= 0, got {count}")
    return tuple((language, counts[language]) for language in LANGUAGES if counts.get(language, 0) > 0)


def _parse_text(text: str) -> dict[str, int]:
    """`"4"` or `"python=2, go=1"` (also `go:1`) as counts by language."""
    stripped = text.strip()
    if stripped.isdigit():
        return {"python": int(stripped)}
    counts: dict[str, int] = {}
    for part in stripped.split(","):
        match = _PAIR.fullmatch(part)
        if match is None:
            raise ValueError(f"a fleet is a number or language=count pairs such as python=2,go=2,java=2; got {text!r}")
        language, count = match.group(1), int(match.group(2))
        counts[language] = counts.get(language, 0) + count
    return counts


def fleet_size(fleet: Fleet) -> int:
    """How many workers `fleet` has in all."""
    return sum(count for _, count in fleet)


def fleet_text(fleet: Fleet) -> str:
    """`2 python + 2 go`, or `no workers`."""
    return " + ".join(f"{count} {language}" for language, count in fleet) or "no workers"


def spawn_order(fleet: Fleet) -> list[str]:
    """The languages to start one by one, interleaved (python, go, java, python, ...) so that a fleet
    that is cut short, or watched while it starts, has every language early."""
    remaining = dict(fleet)
    order: list[str] = []
    while any(remaining.values()):
        for language, _ in fleet:
            if remaining[language] > 0:
                order.append(language)
                remaining[language] -= 1
    return order
