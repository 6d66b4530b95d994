"""Static checks of what scaling the workers on Swarm relies on (part of `python -m lab.swarm.stack_check`).

- the `autoscaler` service runs one of this repository's images on a manager (only a manager's engine can
  change a service), with the engine's socket bound in read-only at the path DOCKER_HOST names, the master's
  operator token as a secret its user can read (OPERATOR_TOKEN_FILE), the master reachable on a shared
  network (MASTER_URL), ACTUATOR=swarm and SWARM_SERVICE naming this stack's worker-python (the stack's name
  from the service's label, which Swarm fills in); at most one replica, replaced stop-first (two would fight);
  and a minimum that defaults to worker-python's replicas (a fleet of Python workers starts at it);
- every worker service's `stop_grace_period` covers its longest task (WORK_SECONDS plus the model's timeout,
  GEMINI_TIMEOUT_SECONDS) and the goodbye, so that a scale-down never cuts a worker off in the middle of a task.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.paths import REPO_ROOT
from lab.swarm.stack import DOCKERFILES, WORKER_SERVICES
from lab.swarm.stack_check import (
    GOODBYE_SECONDS,
    Doc,
    duration,
    environment,
    image_repository,
    image_user_and_entrypoint,
)
from services.worker.settings import WorkerSettings

AUTOSCALER = "autoscaler"
SOCKET = "/var/run/docker.sock"
MANAGER = "node.role == manager"
# The service the autoscaler scales, in this stack whatever its name: Swarm expands the template in a task's
# environment, and `docker stack deploy` labels each service with the stack's name.
STACK_NAME_TEMPLATE = '{{index .Service.Labels "com.docker.stack.namespace"}}'
SCALED = WORKER_SERVICES["python"]
_WORKER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorkerSettings)}
# `${NAME:-10}` (or a plain value): what a value is when the deploy does not set the variable.
_DEFAULTED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}$")


def default_value(value: object) -> str:
    """What a stack value is when no variable is set: `${WORK_SECONDS:-10}` -> `10`, `12` -> `12`."""
    match = _DEFAULTED.match(str(value).strip())
    return match[1] if match else str(value)


def longest_task_seconds(service: Mapping[str, Any]) -> tuple[float, str]:
    """The longest a worker's task takes with the stack's defaults: WORK_SECONDS plus GEMINI_TIMEOUT_SECONDS (the
    workers' own default when the stack sets none), and how that sum was made; ValueError for a non-number."""
    env = environment(service)
    parts = []
    for name, field in (("WORK_SECONDS", "work_seconds"), ("GEMINI_TIMEOUT_SECONDS", "gemini_timeout_seconds")):
        text = default_value(env[name]) if name in env else str(_WORKER_DEFAULTS[field])
        try:
            parts.append((name, float(text)))
        except ValueError:
            raise ValueError(f"{name} is {env.get(name)!r}, not a number of seconds") from None
    return sum(s for _, s in parts), " + ".join(f"{n} ({s:g} s)" for n, s in parts)


def grace_problems(doc: Doc) -> list[str]:
    """Worker services whose grace period would cut off a task in progress."""
    problems = []
    for name, service in (doc.get("services") or {}).items():
        if not str(name).startswith("worker-"):
            continue
        try:
            task, made_of = longest_task_seconds(service)
        except ValueError as e:
            problems.append(f"service {name}: cannot tell how long a task may take: {e}")
            continue
        grace = duration(service.get("stop_grace_period", "10s"))
        if grace is None or grace < task + GOODBYE_SECONDS:
            problems.append(
                f"service {name}: stop_grace_period {service.get('stop_grace_period', '10s (the default)')} is "
                f"shorter than {made_of} + {GOODBYE_SECONDS:g} s to say goodbye = {task + GOODBYE_SECONDS:g} s: "
                "a worker stopped by a scale-down could be killed in the middle of its task"
            )
    return problems


def _user(service: Mapping[str, Any], base_dir: Path) -> tuple[str, str]:
    """(uid, gid) the service runs as: its `user`, else its image's USER ('0' when neither says)."""
    user = str(service.get("user") or "")
    if not user:
        dockerfile = DOCKERFILES.get(image_repository(str(service.get("image", ""))).removeprefix("swarm-ai-lab/"))
        if dockerfile and (base_dir / dockerfile).is_file():
            user = image_user_and_entrypoint(base_dir / dockerfile)[0]
    uid, _, gid = (user or "0").partition(":")
    return uid, gid or uid


def _socket_problems(service: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The engine's socket bound in, read-only, where DOCKER_HOST points."""
    binds = [
        v
        for v in service.get("volumes") or []
        if isinstance(v, Mapping) and v.get("type") == "bind" and v.get("source") == SOCKET
    ]
    short = [v for v in service.get("volumes") or [] if isinstance(v, str) and v.split(":", 1)[0] == SOCKET]
    if not binds and not short:
        return [f"service {AUTOSCALER}: the engine's socket is not mounted (a bind of {SOCKET}, read_only)"]
    problems = []
    targets = [str(v.get("target")) for v in binds] + [v.split(":")[1] for v in short if v.count(":") >= 1]
    read_only = all(v.get("read_only") is True for v in binds) and all(v.endswith(":ro") for v in short)
    if not read_only:
        problems.append(f"service {AUTOSCALER}: the socket's bind is not read_only (the container may replace it)")
    if env.get("DOCKER_HOST") not in {f"unix://{t}" for t in targets}:
        problems.append(
            f"service {AUTOSCALER}: DOCKER_HOST is {env.get('DOCKER_HOST')!r}, not the mounted socket "
            f"({', '.join(f'unix://{t}' for t in targets)})"
        )
    return problems


def _token_problems(doc: Doc, service: Mapping[str, Any], env: Mapping[str, str], base_dir: Path) -> list[str]:
    """The master's operator token, as a secret only the autoscaler's user reads, named by OPERATOR_TOKEN_FILE."""
    master_env = environment((doc.get("services") or {}).get("master") or {})
    master_secrets = {
        f"/run/secrets/{s.get('target', s.get('source'))}": s.get("source")
        for s in ((doc.get("services") or {}).get("master") or {}).get("secrets") or []
        if isinstance(s, Mapping)
    }
    source = master_secrets.get(master_env.get("OPERATOR_TOKEN_FILE", ""))
    given = [s for s in service.get("secrets") or [] if isinstance(s, Mapping) and s.get("source") == source]
    if source is None or not given:
        return [f"service {AUTOSCALER}: lacks the master's operator token secret ({source or 'the master has none'})"]
    secret, owner = given[0], _user(service, base_dir)
    problems = []
    if (str(secret.get("uid", "0")), str(secret.get("gid", "0"))) != owner or secret.get("mode") != 0o400:
        problems.append(
            f"service {AUTOSCALER}: secret {source} is not {owner[0]}:{owner[1]} mode 0o400 (the user it runs as)"
        )
    target = f"/run/secrets/{secret.get('target', source)}"
    if env.get("OPERATOR_TOKEN_FILE") != target:
        problems.append(
            f"service {AUTOSCALER}: OPERATOR_TOKEN_FILE is {env.get('OPERATOR_TOKEN_FILE')!r}, not {target!r}"
        )
    return problems


def _target_problems(doc: Doc, service: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """What it scales, where it finds the master, and the minimum matching worker-python's replicas."""
    services = doc.get("services") or {}
    problems = []
    if env.get("ACTUATOR") != "swarm":
        problems.append(f"service {AUTOSCALER}: ACTUATOR is {env.get('ACTUATOR')!r}, not 'swarm'")
    wanted = f"{STACK_NAME_TEMPLATE}_{SCALED}"
    if env.get("SWARM_SERVICE") != wanted or SCALED not in services:
        problems.append(f"service {AUTOSCALER}: SWARM_SERVICE is {env.get('SWARM_SERVICE')!r}, not {wanted!r}")
    master = services.get("master") or {}
    port = environment(master).get("WEB_PORT", "8888")
    # With standby masters (stack.ha.yml), `master` names every replica: the leader is behind the proxy.
    front = "proxy" if "proxy" in services else "master"
    if env.get("MASTER_URL") != f"http://{front}:{port}":
        problems.append(f"service {AUTOSCALER}: MASTER_URL is {env.get('MASTER_URL')!r}, not 'http://{front}:{port}'")
    if not set(map(str, service.get("networks") or [])) & set(map(str, master.get("networks") or [])):
        problems.append(f"service {AUTOSCALER}: shares no network with the master")
    replicas = default_value(((services.get(SCALED) or {}).get("deploy") or {}).get("replicas", "1"))
    if default_value(env.get("AUTOSCALE_MIN", "")) != replicas:
        problems.append(
            f"service {AUTOSCALER}: AUTOSCALE_MIN {env.get('AUTOSCALE_MIN')!r} does not default to {SCALED}'s "
            f"replicas ({replicas}): a fleet of Python workers would not start at the autoscaler's minimum"
        )
    return problems


def autoscaler_problems(doc: Doc, base_dir: Path = REPO_ROOT) -> list[str]:
    """The autoscaler service can see the master and scale this stack's workers, and nothing more is asked."""
    service = (doc.get("services") or {}).get(AUTOSCALER)
    if service is None:
        return [f"no service {AUTOSCALER} (the workers would stay at the replicas of the deploy)"]
    env = environment(service)
    problems = []
    if image_repository(str(service.get("image", ""))) != f"swarm-ai-lab/{AUTOSCALER}":
        problems.append(f"service {AUTOSCALER}: image {service.get('image')} is not swarm-ai-lab/{AUTOSCALER}")
    deploy = service.get("deploy") or {}
    if MANAGER not in ((deploy.get("placement") or {}).get("constraints") or []):
        problems.append(f"service {AUTOSCALER}: not placed on a manager ({MANAGER}): only a manager can scale")
    if not re.fullmatch(r"\$\{AUTOSCALER:-[01]\}|[01]", str(deploy.get("replicas", "1"))):
        problems.append(f"service {AUTOSCALER}: replicas {deploy.get('replicas')!r} is not ${{AUTOSCALER:-1}} (0 or 1)")
    for key in ("update_config", "rollback_config"):
        if (deploy.get(key) or {}).get("order") != "stop-first":
            problems.append(f"service {AUTOSCALER}: {key}.order is not stop-first (two would fight over replicas)")
    problems += _socket_problems(service, env)
    problems += _token_problems(doc, service, env, base_dir)
    return problems + _target_problems(doc, service, env)


def scaling_problems(doc: Doc, base_dir: Path = REPO_ROOT) -> list[str]:
    """Every problem of this module's checks."""
    return [*autoscaler_problems(doc, base_dir), *grace_problems(doc)]
