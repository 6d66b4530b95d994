"""Static checks of `stack.yml` that `docker stack config` and the Compose schema do not make.

- every `${VAR}` the stack interpolates has a default (`${VAR:-x}`) or a required-error (`${VAR:?msg}`);
- every network, secret, config and named volume a service uses is defined at the top level, every one
  defined is used, and every config file exists;
- every environment variable a service is given is read by that service, and every variable without a
  default in the service's code is given.

`python -m lab.swarm.stack_check [stack.yml ...]` prints the problems and exits 1 when there are any.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.paths import REPO_ROOT
from services.master.settings import MasterSettings
from services.worker.settings import WorkerSettings

STACK = REPO_ROOT / "stack.yml"
# The Compose Specification's JSON schema, as published in compose-spec/compose-go (see schemas/README.md).
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"

# `$$` is a literal dollar; `${NAME...}` and `$NAME` are interpolated.
_BRACED = re.compile(r"(?<!\$)(?:\$\$)*\$\{([^}]*)\}")
_BARE = re.compile(r"(?<!\$)(?:\$\$)*\$([A-Za-z_][A-Za-z0-9_]*)")
_WITH_DEFAULT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(:?-|:?\?)")
# A shell variable in a command, after the stack's `$$` became `$`: `$NAME` or `${NAME}`.
_SHELL_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")

Doc = Mapping[str, Any]


def load(path: Path = STACK) -> dict[str, Any]:
    """The stack file as YAML data (anchors resolved, nothing interpolated)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return data


def schema_errors(doc: Doc) -> list[str]:
    """Where `doc` breaks the Compose Specification's JSON schema."""
    import jsonschema  # only this check needs it

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def interpolation_problems(text: str) -> list[str]:
    """Variables the stack interpolates without a default or an explicit required-error."""
    problems = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        for expr in _BRACED.findall(line):
            if not _WITH_DEFAULT.match(expr):
                problems.append(f"line {lineno}: ${{{expr}}} has no default: write ${{{expr}:-value}}")
        for name in _BARE.findall(line):
            problems.append(f"line {lineno}: ${name} has no default: write ${{{name}:-value}} (or $${name})")
    return problems


def _names(entries: object, key: str = "source") -> Iterator[str]:
    """Names in a service's list of short (`name`) or long (`{source: name}`) references, or a mapping."""
    if isinstance(entries, Mapping):
        yield from (str(name) for name in entries)
    elif isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, Mapping):
                if key in entry:
                    yield str(entry[key])
            else:
                yield str(entry)


def _named_volumes(entries: object) -> Iterator[str]:
    """The named volumes among a service's volume entries (not bind mounts or tmpfs)."""
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping):
            if entry.get("type", "volume") == "volume" and entry.get("source"):
                yield str(entry["source"])
        else:
            source = str(entry).split(":", 1)[0]
            if ":" in str(entry) and not source.startswith(("/", ".", "~", "$")):
                yield source


def reference_problems(doc: Doc, base_dir: Path = REPO_ROOT) -> list[str]:
    """Dangling and unused references between services and the top-level definitions."""
    services: Mapping[str, Any] = doc.get("services") or {}
    uses: dict[str, set[str]] = {"networks": set(), "secrets": set(), "configs": set(), "volumes": set()}
    problems = []
    for name, service in services.items():
        found = {
            "networks": set(_names(service.get("networks"))),
            "secrets": set(_names(service.get("secrets"))),
            "configs": set(_names(service.get("configs"))),
            "volumes": set(_named_volumes(service.get("volumes"))),
        }
        for kind, used in found.items():
            defined = set(doc.get(kind) or {})
            # Every stack has an implicit `default` network.
            for missing in sorted(used - defined - ({"default"} if kind == "networks" else set())):
                problems.append(f"service {name} uses {kind[:-1]} {missing!r}, which is not defined under {kind}:")
            uses[kind] |= used
        for other in _names(service.get("depends_on")):
            if other not in services:
                problems.append(f"service {name} depends on {other!r}, which is not a service")
    for kind, used in uses.items():
        for unused in sorted(set(doc.get(kind) or {}) - used):
            problems.append(f"{kind[:-1]} {unused!r} is defined but no service uses it")
    for name, config in (doc.get("configs") or {}).items():
        file = (config or {}).get("file")
        if file and not (base_dir / file).is_file():
            problems.append(f"config {name}: file {file} does not exist")
    return problems


# What a service built here reads of its environment, by the image it runs (the images' entrypoints read
# these settings): every variable of its settings, the `NAME_FILE` of each secret included.
READERS: dict[str, frozenset[str]] = {
    "swarm-ai-lab/master": MasterSettings.env_names(),
    "swarm-ai-lab/worker": WorkerSettings.env_names(),
}


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, from either the mapping or the `NAME=value` list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {name: value for name, _, value in (str(item).partition("=") for item in env)}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _shell_reads(service: Mapping[str, Any]) -> set[str] | None:
    """Variables a service's own shell command and healthcheck read; None when it has no shell command."""
    parts: list[str] = []
    for field in (service.get("command"), service.get("entrypoint"), (service.get("healthcheck") or {}).get("test")):
        if isinstance(field, list):
            parts.extend(map(str, field))
        elif field:
            parts.append(str(field))
    text = " ".join(parts).replace("$$", "$")
    if not any(p in ("sh", "CMD-SHELL", "/bin/sh") for p in parts):
        return None
    return set(_SHELL_VAR.findall(text))


def environment_problems(doc: Doc) -> list[str]:
    """Variables given to a service that it never reads, and variables it reads with no value anywhere."""
    problems = []
    for name, service in (doc.get("services") or {}).items():
        given = _environment(service)
        image = str(service.get("image", ""))
        reader = next((r for key, r in READERS.items() if f"/{key}:" in image or image.startswith(f"{key}:")), None)
        if reader is not None:
            reads: set[str] | frozenset[str] = reader
        else:
            shell = _shell_reads(service)
            if shell is None:
                problems.append(f"service {name}: no known reader of its environment (image {image})")
                continue
            # A shell command reads its variables without defaults: each must be given.
            for missing in sorted(shell - set(given) - {"PATH", "HOME"}):
                problems.append(f"service {name}: its command reads ${missing}, which the stack does not set")
            reads = shell
        for unread in sorted(set(given) - reads):
            problems.append(f"service {name}: sets {unread}, which the service never reads")
    return problems


def check(path: Path = STACK) -> list[str]:
    """Every problem the checks of this module find in the stack file at `path`."""
    doc = load(path)
    return [
        *interpolation_problems(path.read_text(encoding="utf-8")),
        *(f"schema: {e}" for e in schema_errors(doc)),
        *reference_problems(doc, path.parent),
        *environment_problems(doc),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Check each stack file given (default: stack.yml); exit 1 when any has a problem."""
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)] or [STACK]
    failed = False
    for path in paths:
        problems = check(path)
        print(f"{path}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  - {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
