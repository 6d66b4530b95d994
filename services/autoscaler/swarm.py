"""The Swarm actuator: sets the replicas of the worker service through the Docker Engine API.

On a Swarm the autoscaler does not start or stop workers itself: it changes the desired replicas of one
replicated service (`SWARM_SERVICE`, e.g. `ai-system_worker-python`) with the Docker SDK for Python, the same
update that `docker service scale` makes, and Swarm starts or stops the tasks. The other worker services of
its stack (the Go and Java workers) count as a fixed part of the fleet. The SDK blocks, so every call runs in a
thread.

`python -m services.autoscaler.swarm --check` is the stack's health check of the autoscaler: it exits 0 when
the engine answers and the worker service is a replicated one, else 1 with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.services import Service

from services.autoscaler.settings import DEFAULT_DOCKER_HOST

log = logging.getLogger(__name__)

# Seconds the engine has to answer one call before it fails (and the autoscaler's next round tries again).
DEFAULT_TIMEOUT_S = 30.0
# A rolling update or rollback of the service in progress (or paused): a scale now would become the spec that an
# automatic rollback goes back to (the engine keeps one previous spec), so the scale waits until it ends.
UNFINISHED_UPDATES = frozenset({"updating", "paused", "rollback_started", "rollback_paused"})
# The engine refuses an update made from a stale version of the spec (a deploy or a scale by hand came in
# between our read and our write); read again and retry this many times.
UPDATE_ATTEMPTS = 3

# `docker stack deploy` labels each service with its stack's name.
STACK_LABEL = "com.docker.stack.namespace"
# The worker services of a stack are `<stack>_worker-<language>` (stack.yml).
WORKER_PREFIX = "worker-"

ClientFactory = Callable[[], docker.DockerClient]
T = TypeVar("T")


class SwarmError(RuntimeError):
    """The engine cannot be reached, or the worker service cannot be scaled; the message says why and what to
    do."""


def _replicas(service: Service) -> int:
    """The desired replicas of a replicated service (SwarmError for a global one)."""
    mode: Mapping[str, Any] = service.attrs.get("Spec", {}).get("Mode", {})
    if "Replicated" not in mode:
        kind = next(iter(mode), "unknown")
        raise SwarmError(
            f"service {service.name} is {kind.lower()}, not replicated: the autoscaler sets the replicas of a "
            "replicated service (mode: replicated, the default in stack.yml)"
        )
    return int(mode["Replicated"].get("Replicas", 0))


class SwarmActuator:
    """Scales one replicated Swarm service (the workers) between the policy's targets.

    The master lists, and the policy sizes, every worker whatever its language; the autoscaler scales one
    service (the Python workers). The other worker services of the same stack (`<stack>_worker-*`, e.g. the Go
    and Java workers at the replicas of the deploy) are a fixed part of the fleet: `current()` counts them, and
    `scale_to(n)` gives the scaled service what `n` leaves after them (never below 0).

    `idle_workers` is ignored: Swarm picks which task to stop, and the autoscaler cannot tell it which. Nothing
    is lost all the same. Swarm stops a task with SIGTERM; the worker then stops working, reports idle
    without a result and says goodbye (offline), and the master hands the task it was on to another worker at
    once (docs/PROTOCOL.md). The stack's `stop_grace_period` for the workers is at least WORK_SECONDS plus
    the model's timeout (GEMINI_TIMEOUT_SECONDS) plus the goodbye, so even a worker that finishes its task
    before it leaves is not killed in the middle of it.
    """

    def __init__(self, service_name: str, client: docker.DockerClient | ClientFactory) -> None:
        """`client` is a Docker client, or a function that makes one on first use (in the actuator's thread,
        so that making it never blocks the event loop and an engine down at start is retried on the next
        call)."""
        if not service_name:
            raise ValueError(
                "the Swarm service to scale is not named: set SWARM_SERVICE (e.g. ai-system_worker-python)"
            )
        self.service_name = service_name
        self._client: docker.DockerClient | None = None
        self._factory: ClientFactory | None = None
        if isinstance(client, docker.DockerClient):
            self._client = client
        else:
            self._factory = client
        self._lock = threading.Lock()  # one call at a time: the SDK's client is not meant for threads

    async def current(self) -> int:
        """The workers Swarm runs or is starting: the service's desired replicas and those of its stack's other
        worker services."""
        return await asyncio.to_thread(self._locked, self._current)

    async def scale_to(self, target: int, idle_workers: list[str]) -> None:
        """Make `target` workers in all: the service's replicas are `target` less the other worker services'
        (nothing when it already has them, or while a rolling
        update or rollback of it is unfinished: the next call tries again). `idle_workers` is ignored: see the
        class's docstring."""
        if target < 0:
            raise ValueError(f"cannot scale {self.service_name} to {target} replicas")
        await asyncio.to_thread(self._locked, lambda: self._scale(target))

    async def close(self) -> None:
        """Close the client's connections (the client is made again if the actuator is used after this)."""
        await asyncio.to_thread(self._locked, self._close)

    # -- in the thread ---------------------------------------------------------------------------------------

    def _locked(self, call: Callable[[], T]) -> T:
        with self._lock:
            return call()

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            if self._factory is None:
                raise SwarmError("the actuator was closed and has no way to make a new Docker client")
            self._client = self._guarded(self._factory)
        return self._client

    def _service(self) -> Service:
        client = self._docker()
        try:
            service: Service = self._guarded(lambda: client.services.get(self.service_name))  # type: ignore[no-untyped-call]
            return service
        except NotFound as e:
            raise self._missing() from e

    def _missing(self) -> SwarmError:
        return SwarmError(
            f"no Swarm service {self.service_name!r} on this engine: SWARM_SERVICE is the stack's name, an "
            "underscore and the worker service's name (e.g. ai-system_worker-python; `docker service ls` lists them)"
        )

    def _others(self, service: Service) -> dict[str, int]:
        """Desired replicas of the other replicated worker services of `service`'s stack (none when it is not
        in a stack)."""
        stack = (service.attrs.get("Spec", {}).get("Labels") or {}).get(STACK_LABEL)
        if not stack:
            return {}
        client = self._docker()
        listed: list[Service] = self._guarded(lambda: client.services.list(filters={"label": f"{STACK_LABEL}={stack}"}))
        return {
            str(other.name): int(mode["Replicated"].get("Replicas", 0))
            for other in listed
            if other.id != service.id
            and str(other.name).startswith(f"{stack}_{WORKER_PREFIX}")
            and "Replicated" in (mode := other.attrs.get("Spec", {}).get("Mode", {}))
        }

    def _current(self) -> int:
        service = self._service()
        return _replicas(service) + sum(self._others(service).values())

    def _scale(self, target: int) -> None:
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            service = self._service()
            before, others = _replicas(service), self._others(service)
            replicas = max(0, target - sum(others.values()))
            if before == replicas:
                return
            update = str((service.attrs.get("UpdateStatus") or {}).get("State") or "")
            if update in UNFINISHED_UPDATES:
                log.info(
                    "swarm: %s is in an update (%s): scaling %d -> %d waits until it ends",
                    self.service_name,
                    update,
                    before,
                    replicas,
                )
                return
            try:
                # The SDK sends the service's current spec with only the replicas changed, and the version it
                # read: the engine refuses the update if the spec changed in between (no lost update). The
                # registry login stored with the spec stays (the engine keeps it when none is sent).
                result: object = self._guarded(partial(service.scale, replicas))
            except NotFound as e:  # removed since we read it
                raise self._missing() from e
            except APIError as e:
                if attempt < UPDATE_ATTEMPTS:
                    log.info("swarm: %s changed while being scaled; reading it again", self.service_name)
                    continue
                raise SwarmError(
                    f"{self.service_name} kept changing while being scaled ({e.explanation}): is something else "
                    "scaling or updating it?"
                ) from e
            warnings = result.get("Warnings") if isinstance(result, dict) else None
            for warning in warnings or []:
                log.warning("swarm: scaling %s: %s", self.service_name, warning)
            fixed = ", ".join(f"{n} of {name}" for name, n in sorted(others.items()))
            log.info(
                "swarm: %s %d -> %d replicas%s",
                self.service_name,
                before,
                replicas,
                f" ({target} workers with {fixed})" if others else "",
            )
            return

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _guarded(self, call: Callable[[], T]) -> T:
        """`call()`, with the engine's failures turned into SwarmError messages that say what to do (never the
        service's spec: it is not logged, nor put in an error)."""
        try:
            return call()
        except NotFound:
            raise
        except APIError as e:
            status = e.response.status_code if e.response is not None else None
            explanation = str(e.explanation or e)
            if status == 503 and "manager" in explanation:
                raise SwarmError(
                    f"the engine is not a Swarm manager ({explanation}): the autoscaler must run on a manager "
                    "(stack.yml: placement node.role == manager)"
                ) from e
            if "out of sequence" in explanation:
                raise
            raise SwarmError(f"the engine refused to scale {self.service_name}: {explanation}") from e
        except (requests.exceptions.ConnectionError, DockerException, OSError) as e:
            raise SwarmError(
                f"cannot reach the Docker engine ({_reason(e)}): the autoscaler needs the engine's socket "
                "(stack.yml mounts /var/run/docker.sock into it, on a manager) or DOCKER_HOST pointing at one"
            ) from e


def _reason(error: BaseException) -> str:
    """The innermost cause of a connection failure, in one line (`[Errno 2] No such file or directory`)."""
    while error.__cause__ is not None or error.__context__ is not None:
        inner = error.__cause__ or error.__context__
        assert inner is not None
        error = inner
    for arg in getattr(error, "args", ()):
        if isinstance(arg, BaseException):
            return _reason(arg)
    return str(error) or type(error).__name__


def docker_client_factory(
    docker_host: str, timeout_s: float = DEFAULT_TIMEOUT_S, environ: Mapping[str, str] | None = None
) -> ClientFactory:
    """A function that makes a Docker client for `docker_host` (`unix:///var/run/docker.sock`, `tcp://...`),
    speaking the API version the engine offers; TLS as the Docker client's own variables say (DOCKER_TLS_VERIFY,
    DOCKER_CERT_PATH in `environ`, default this process's environment)."""
    env = {**(os.environ if environ is None else environ), "DOCKER_HOST": docker_host}

    def make() -> docker.DockerClient:
        return docker.DockerClient.from_env(environment=env, version="auto", timeout=int(timeout_s))

    return make


def swarm_actuator_from_env(
    service_name: str | None = None,
    docker_host: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SwarmActuator:
    """The Swarm actuator for SWARM_SERVICE through DOCKER_HOST (default: the engine's unix socket); the
    arguments, when given, win over the environment. Makes no call to the engine yet."""
    env = os.environ if environ is None else environ
    name = service_name or env.get("SWARM_SERVICE", "")
    host = docker_host or env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    return SwarmActuator(name, docker_client_factory(host, environ=env))


def check(environ: Mapping[str, str] | None = None) -> str:
    """What the health check sees: the worker service and its replicas (SwarmError when it cannot)."""
    actuator = swarm_actuator_from_env(environ=environ)
    try:
        return f"{actuator.service_name}: {actuator._locked(lambda: _replicas(actuator._service()))} replicas"
    finally:
        actuator._locked(actuator._close)


def main(argv: Sequence[str] | None = None) -> int:
    """`--check`: exit 0 when the engine answers and SWARM_SERVICE is a replicated service, else 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--check"]:
        print("usage: python -m services.autoscaler.swarm --check", file=sys.stderr)
        return 2
    try:
        print(check())
    except (SwarmError, ValueError) as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
