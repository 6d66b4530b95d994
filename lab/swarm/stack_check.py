"""Static checks of `stack.yml` that `docker stack config` and the Compose schema do not make.

- every `${VAR}` the stack interpolates has a default (`${VAR:-x}`) or a required-error (`${VAR:?msg}`);
- every network, secret, config and named volume a service uses is defined at the top level, every one
  defined is used, and every config file exists;
- every environment variable a service is given is read by that service, and every variable without a
  default in the service's code is given;
- every worker service (`worker-*`, one per language) runs one of our images as a non-root user, gets the
  worker's MQTT password and the Gemini key as secrets owned by that user, checks its health with its own
  binary's `--check`, takes its replicas from its variable (WORKERS, WORKERS_GO, WORKERS_JAVA), starts the new
  task first on an update, and has the same settings, secrets and policies as the other workers;
- what scaling relies on (lab.swarm.scaling_check): the autoscaler runs on a manager with the engine's socket
  and the operator token and scales the stack's own worker-python, and each worker's grace period covers a
  whole task.

`python -m lab.swarm.stack_check [stack.yml ...]` prints the problems and exits 1 when there are any.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from lab.paths import REPO_ROOT
from lab.swarm.stack import DOCKERFILES, HA_ETCD_VARIABLES, WORKER_SERVICES, WORKER_VARIABLES
from services.autoscaler.settings import AutoscalerSettings
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
# The Go and Java workers read exactly the Python worker's settings (services/worker-go/README.md; the
# conformance suite holds them to it).
READERS: dict[str, frozenset[str]] = {
    "swarm-ai-lab/master": MasterSettings.env_names(),
    "swarm-ai-lab/worker": WorkerSettings.env_names(),
    "swarm-ai-lab/worker-go": WorkerSettings.env_names(),
    "swarm-ai-lab/worker-java": WorkerSettings.env_names(),
    "swarm-ai-lab/autoscaler": AutoscalerSettings.env_names(),
    # stack.ha.yml's (DEPLOY.md, section 15): the etcd members' ETCD_* and ETCDCTL_*; HAProxy reads only its file.
    "swarm-ai-lab/etcd": HA_ETCD_VARIABLES,
    "swarm-ai-lab/proxy": frozenset(),
}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
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
        given = environment(service)
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


# -- the workers ---------------------------------------------------------------------------------------------

# What a worker must be given as a secret (source -> the variable that names its file).
WORKER_SECRETS = {"mqtt_worker_password": "MQTT_PASSWORD_FILE", "gemini_api_key": "GEMINI_API_KEY_FILE"}
# What every worker service must share, key by key (deploy's keys apart from replicas).
SHARED_KEYS = ("environment", "secrets", "networks", "stop_grace_period", "logging")
SHARED_DEPLOY_KEYS = ("restart_policy", "update_config", "rollback_config", "resources", "placement")
SHARED_HEALTH_KEYS = ("interval", "timeout", "retries", "start_period")
# A worker told to stop says goodbye (offline) and exits within 2 s, leaving its task to the master
# (conformance: exit within 5 s). The grace period must let it say goodbye.
GOODBYE_SECONDS = 5.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def duration(value: object) -> float | None:
    """Seconds of a Compose duration (`15s`, `1m30s`, `500ms`); None when it is not one."""
    text = str(value).strip()
    found = _DURATION.findall(text)
    if not found or "".join(n + u for n, u in found) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in found)


def image_repository(image: str) -> str:
    """`${REGISTRY:-localhost:5000}/swarm-ai-lab/worker-go:${TAG:-latest}` -> `swarm-ai-lab/worker-go`."""
    match = re.search(r"(swarm-ai-lab/[a-z0-9._-]+)(?::|@|$)", image)
    return match[1] if match else image


def _logical_lines(text: str) -> Iterator[tuple[str, str]]:
    pending = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        pending = ""
        yield word.upper(), rest.strip()


def image_user_and_entrypoint(dockerfile: Path) -> tuple[str, list[str]]:
    """The final stage's USER ('' when none: root) and exec-form ENTRYPOINT of a Dockerfile (a stage built
    `FROM` an earlier one inherits both)."""
    stages: dict[str, tuple[str, list[str]]] = {}
    user, entrypoint, current = "", list[str](), None
    for word, args in _logical_lines(dockerfile.read_text(encoding="utf-8")):
        if word == "FROM":
            parts = [p for p in args.split() if not p.startswith("--")]
            user, entrypoint = stages.get(parts[0].lower(), ("", []))
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages[parts[2].lower()] = (user, entrypoint)
            current = parts[2].lower() if len(parts) >= 3 else None
        elif word in ("USER", "ENTRYPOINT"):
            if word == "USER":
                user = args
            else:
                entrypoint = [str(a) for a in json.loads(args)] if args.startswith("[") else ["/bin/sh", "-c", args]
            if current is not None:
                stages[current] = (user, entrypoint)
    return user, entrypoint


def _program(argv: Sequence[str]) -> list[str]:
    """A command with its program's directory dropped: `/usr/local/bin/worker-go x` -> `worker-go x`."""
    return [PurePosixPath(argv[0]).name, *argv[1:]] if argv else []


def _secret_problems(name: str, service: Mapping[str, Any], uid: str, gid: str) -> list[str]:
    """The worker's password and the Gemini key: secrets readable by the image's user only, named by *_FILE."""
    problems = []
    env = environment(service)
    given = {str(s["source"]): s for s in service.get("secrets") or [] if isinstance(s, Mapping) and "source" in s}
    for source, variable in WORKER_SECRETS.items():
        secret = given.get(source)
        if secret is None:
            problems.append(f"service {name}: lacks the secret {source} (long form, with uid, gid and mode)")
            continue
        owner = (str(secret.get("uid", "0")), str(secret.get("gid", "0")))
        if owner != (uid, gid) or secret.get("mode") != 0o400:
            problems.append(
                f"service {name}: secret {source} is {owner[0]}:{owner[1]} mode {oct(secret.get('mode', 0o444))}, "
                f"not {uid}:{gid} mode 0o400 (the image's user)"
            )
        target = f"/run/secrets/{secret.get('target', source)}"
        if env.get(variable) != target:
            problems.append(f"service {name}: {variable} is {env.get(variable)!r}, not {target!r}")
    if env.get("MQTT_USERNAME") != "worker":
        problems.append(f"service {name}: MQTT_USERNAME is {env.get('MQTT_USERNAME')!r}, not 'worker' (the ACL's)")
    return problems


def _policy_problems(name: str, service: Mapping[str, Any], language: str) -> list[str]:
    """The grace period lets a worker say goodbye; replicas from its variable; updates start the new one first.
    (That it also covers a whole task: lab.swarm.scaling_check.)"""
    problems = []
    grace = duration(service.get("stop_grace_period", "10s"))
    if grace is None or grace < GOODBYE_SECONDS:
        problems.append(
            f"service {name}: stop_grace_period {service.get('stop_grace_period')} is shorter than the "
            f"{GOODBYE_SECONDS:g} s a worker may take to say goodbye"
        )
    deploy = service.get("deploy") or {}
    variable = WORKER_VARIABLES[language]
    if not re.fullmatch(rf"\$\{{{variable}:-\d+\}}", str(deploy.get("replicas", ""))):
        problems.append(f"service {name}: replicas {deploy.get('replicas')!r} is not ${{{variable}:-N}}")
    for key in ("update_config", "rollback_config"):
        if (deploy.get(key) or {}).get("order") != "start-first":
            problems.append(f"service {name}: {key}.order is not start-first (a worker holds no state)")
    return problems


def _worker_problems(name: str, service: Mapping[str, Any], base_dir: Path) -> list[str]:
    language = next((lang for lang, svc in WORKER_SERVICES.items() if svc == name), None)
    if language is None:
        return [f"service {name}: a worker of no known language (known: {', '.join(WORKER_SERVICES.values())})"]
    dockerfile = DOCKERFILES.get(image_repository(str(service.get("image", ""))).removeprefix("swarm-ai-lab/"))
    if dockerfile is None:
        return [f"service {name}: image {service.get('image')} is not one built from this repository"]
    if not (base_dir / dockerfile).is_file():
        return [f"service {name}: {dockerfile}, which builds its image, does not exist"]
    problems = []
    user, entrypoint = image_user_and_entrypoint(base_dir / dockerfile)
    uid, _, gid = str(service.get("user") or user).partition(":")
    if not uid.isdigit() or int(uid) == 0:
        problems.append(
            f"service {name}: its image runs as {uid or 'root'!r}: a worker runs as a numeric non-root user"
        )
    problems += _secret_problems(name, service, uid, gid or uid)
    # Health: the image's own program with --check, exec form (the image may have no shell).
    test = [str(t) for t in (service.get("healthcheck") or {}).get("test") or []]
    if test[:1] != ["CMD"] or test[-1:] != ["--check"] or _program(test[1:-1]) != _program(entrypoint):
        problems.append(f'service {name}: health check {test} is not ["CMD", <its ENTRYPOINT {entrypoint}>, "--check"]')
    return problems + _policy_problems(name, service, language)


def worker_problems(doc: Doc, base_dir: Path = REPO_ROOT) -> list[str]:
    """Every worker service (`worker-*`) is a worker as the system needs it, and all share their settings."""
    services: Mapping[str, Any] = doc.get("services") or {}
    workers = {name: s for name, s in services.items() if str(name).startswith("worker-")}
    problems = [f"no service {s} (the {lang} worker)" for lang, s in WORKER_SERVICES.items() if s not in workers]
    for name, service in workers.items():
        problems.extend(_worker_problems(name, service, base_dir))
    if not workers:
        return problems
    first, reference = next(iter(workers.items()))
    for name, service in list(workers.items())[1:]:
        pairs = [(key, service.get(key), reference.get(key)) for key in SHARED_KEYS]
        pairs += [
            (f"deploy.{key}", (service.get("deploy") or {}).get(key), (reference.get("deploy") or {}).get(key))
            for key in SHARED_DEPLOY_KEYS
        ]
        pairs += [
            (
                f"healthcheck.{key}",
                (service.get("healthcheck") or {}).get(key),
                (reference.get("healthcheck") or {}).get(key),
            )
            for key in SHARED_HEALTH_KEYS
        ]
        problems += [f"service {name}: {key} differs from {first}'s" for key, mine, theirs in pairs if mine != theirs]
    return problems


def check(path: Path = STACK) -> list[str]:
    """Every problem the checks of this module and of lab.swarm.scaling_check find in the stack file at `path`."""
    # Imported here: the scaling checks use this module's readers (a module of their own for its size).
    from lab.swarm.scaling_check import scaling_problems

    doc = load(path)
    return [
        *interpolation_problems(path.read_text(encoding="utf-8")),
        *(f"schema: {e}" for e in schema_errors(doc)),
        *reference_problems(doc, path.parent),
        *environment_problems(doc),
        *worker_problems(doc, path.parent),
        *scaling_problems(doc, path.parent),
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
