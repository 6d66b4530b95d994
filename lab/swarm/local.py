"""`lab swarm local up|down`: the real stack.yml on a one-node Swarm of this machine, and everything it made
removed again.

`up` starts dockerd when none answers (if allowed) and a registry on 127.0.0.1:5000, creates a swarm, makes the
stand-in base images (Docker Hub is unreachable here), builds the master's image, those of the fleet's worker
languages and (with AUTOSCALER=1) the autoscaler's with BuildKit (the host's extra CA as a build secret),
pushes them, creates the secrets and deploys stack.yml with stack.no-ipvs.yml, then waits until every service
is healthy. What it made is written to a state file that `down` reads.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.swarm import verify as swarm_verify
from lab.swarm.docker import SWARM_STATE_FORMAT, Docker, DockerError
from lab.swarm.engine import (
    STATE_DIR,
    EngineState,
    Host,
    clean_runtime,
    daemon_answers,
    registry_answers,
    restore_network,
    snapshot,
    start_dockerd,
    start_registry,
    stop_process,
)
from lab.swarm.secrets import ensure_secrets
from lab.swarm.stack import (
    DEFAULT_REGISTRY,
    DEFAULT_STACK,
    DOCKERFILES,
    IMAGES,
    NODE_LABELS,
    SECRETS,
    STACK_FILE,
    VOLUMES,
    WORKER_SERVICES,
    build_args,
    config_version,
    deploy_env,
    image,
)
from lab.swarm.standins import IMAGE_BUILD_ARGS, bundle, host_extra_ca, host_goroot, make_standins
from lab.system.workers import Fleet, FleetSpec, parse_fleet

NO_IPVS_FILE = "stack.no-ipvs.yml"
DEBIAN_CLIENT = "/usr/bin/docker"
# BuildKit through the client: Debian's own CLI uses the daemon's built-in BuildKit (a newer CLI without the
# buildx plugin refuses DOCKER_BUILDKIT=1).
BUILDKIT = {"DOCKER_BUILDKIT": "1"}
# The autoscaler is off unless AUTOSCALER=1 is set: the engine test scales and updates worker-python by hand,
# which an autoscaler would undo (its image is built only when it runs).
LOCAL_DEFAULTS = {"MODEL_MODE": "offline", "WORK_SECONDS": "2", "AUTOSCALER": "0"}


@dataclass
class LocalOptions:
    """What `lab swarm local up` is asked to do."""

    stack: str = DEFAULT_STACK
    tag: str = "local"
    # The whole fleet: 2 (Python), or e.g. "python=1,go=1,java=1"; the worker services of the languages not
    # named are deployed with 0 replicas (and their images are not built).
    workers: FleetSpec = 2
    start_engine: bool = False
    extra_ca: Path | None = None  # None: the host's extra CAs, if it has any
    no_extra_ca: bool = False
    upstream_images: bool = False  # the Dockerfiles' default bases (Docker Hub or a mirror), no stand-ins
    timeout: float = 300.0
    state_dir: Path = STATE_DIR
    figures: dict[str, Any] = field(default_factory=dict)


def local_docker(dry_run: bool = False) -> Docker:
    """The docker runner of `lab swarm local`: Debian's own client when installed (see BUILDKIT)."""
    return Docker(dry_run=dry_run, client=DEBIAN_CLIENT if Path(DEBIAN_CLIENT).is_file() else None)


def _ensure_engine(docker: Docker, state: EngineState, options: LocalOptions) -> None:
    if daemon_answers(docker):
        docker.out("# a Docker daemon answers: using it (it is left running at `down`)")
    elif not options.start_engine:
        raise DockerError(
            "no Docker daemon answers; `lab swarm local up --start-engine` starts dockerd here (and `down` stops "
            "it), or start one yourself (`sudo systemctl start docker`)"
        )
    else:
        state.dockerd_pid = start_dockerd(docker, options.state_dir)
        state.save(options.state_dir)
    if registry_answers():
        docker.out("# a registry answers on 127.0.0.1:5000: using it")
    else:
        state.registry_pid = start_registry(docker.out, options.state_dir)
        state.save(options.state_dir)


def _ensure_swarm(docker: Docker, state: EngineState) -> None:
    info = docker.query("info", "--format", SWARM_STATE_FORMAT)
    if info is None:
        return
    if info.stdout.strip().startswith("inactive"):
        # Loopback: never an address of the host's real network (least of all its gateway's).
        docker.run("swarm", "init", "--advertise-addr", "127.0.0.1")
        state.swarm_created = True
    else:
        docker.require_manager()
    node = docker.query("info", "--format", "{{.Swarm.NodeID}}")
    labels = docker.query("node", "inspect", "--format", "{{json .Spec.Labels}}", "self")
    if node is None or labels is None:
        return
    for label in NODE_LABELS:
        if f'"{label}":"true"' not in labels.stdout:
            docker.run("node", "update", "--label-add", f"{label}=true", node.stdout.strip())
            state.labels_added.append(label)


def extra_ca_bundle(options: LocalOptions, into: Path, out: Any) -> Path | None:
    """The CA file to give the builds: --extra-ca, else the host's extra CAs bundled into `into`, else None."""
    if options.no_extra_ca:
        return None
    if options.extra_ca is not None:
        if not options.extra_ca.is_file():
            raise DockerError(f"--extra-ca {options.extra_ca}: no such file")
        return options.extra_ca
    found = host_extra_ca()
    if not found:
        return None
    out(f"# extra CA for the builds (build secret extra_ca, not a layer): {', '.join(map(str, found))}")
    return bundle(found, into)


def fleet_images(fleet: Fleet, autoscaler: bool = False) -> list[str]:
    """The images a local deployment of `fleet` needs: the master's, those of its workers' languages, and the
    autoscaler's when it runs (in DOCKERFILES' order)."""
    services = ["master", *(WORKER_SERVICES[language] for language, _ in fleet)]
    if autoscaler:
        services.append("autoscaler")
    return [name for name in DOCKERFILES if name in {IMAGES[s] for s in services}]


def check_toolchains(images: list[str], upstream_images: bool) -> None:
    """Refuse, before anything starts, a fleet whose stand-ins this host cannot make (the Go stand-in is the
    host's own Go toolchain)."""
    if "worker-go" in images and not upstream_images:
        host_goroot()


def build_images(
    docker: Docker,
    tag: str,
    extra_ca: Path | None,
    base_args: Mapping[str, Mapping[str, str]],
    label: str | None = None,
    images: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Build and push the images (default: the master's and the Python worker's) with BuildKit, each given
    the base images of `base_args[name]` that its Dockerfile declares; per image: build and push seconds,
    cold or warm, size (MB)."""
    figures: dict[str, dict[str, Any]] = {}
    for name in images or ["master", "worker"]:
        dockerfile = DOCKERFILES[name]
        reference = image(DEFAULT_REGISTRY, tag, name)
        # Warm: an image of this name was built here before, so the build cache likely holds its layers.
        earlier = docker.query("image", "ls", "-q", reference.rsplit(":", 1)[0], echo=False)
        cold = not (earlier and earlier.lines())
        bases = build_args(docker.cwd / dockerfile, base_args.get(name, {}))
        args = ["build", "-f", dockerfile, "-t", reference, *bases]
        if extra_ca is not None:
            args += ["--secret", f"id=extra_ca,src={extra_ca}"]
        if label is not None:
            args += ["--label", label]
        started = time.monotonic()
        docker.run(*args, ".", env=BUILDKIT)
        built = time.monotonic()
        docker.run("push", reference)
        size = docker.query("image", "inspect", "--format", "{{.Size}}", reference, echo=False)
        figures[name] = {
            "build_s": round(built - started, 1),
            "cache": "cold" if cold else "warm",
            "push_s": round(time.monotonic() - built, 1),
            "size_mb": round(int(size.stdout.strip()) / 1e6, 1) if size and size.returncode == 0 else None,
        }
    return figures


def explain_override(docker: Docker) -> None:
    """Print the header of stack.no-ipvs.yml: what it changes and why."""
    for line in (docker.cwd / NO_IPVS_FILE).read_text().splitlines():
        if not line.startswith("#"):
            break
        docker.out(line)


def deploy(docker: Docker, options: LocalOptions) -> None:
    """`docker stack deploy` of stack.yml and the no-IPVS override, without asking Docker Hub for digests."""
    env = deploy_env(
        docker.environ,
        registry=DEFAULT_REGISTRY,
        tag=options.tag,
        version=config_version(docker.cwd),
        workers=parse_fleet(options.workers),
    )
    for name, value in LOCAL_DEFAULTS.items():
        env.setdefault(name, value)
    explain_override(docker)
    docker.run(
        "stack", "deploy", "-c", STACK_FILE, "-c", NO_IPVS_FILE, "--prune", "--resolve-image", "never", options.stack,
        env=env,
    )  # fmt: skip


def wait_healthy(docker: Docker, stack: str, url: str, timeout: float) -> float:
    """Wait until every task runs healthy and the master lists its workers; return the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    docker.out(f"# waiting (up to {timeout:g} s) for every service to run healthy and {url}/api/status to list workers")
    checks: list[swarm_verify.Check] = []
    while time.monotonic() < deadline:
        outcome = swarm_verify.converged(docker, stack)
        if outcome is None:
            return 0.0
        checks, workers = outcome
        if all(c.ok for c in checks):
            checks = [swarm_verify.web_check(url, workers, swarm_verify.operator_token(docker, stack, echo=False))]
            if checks[0].ok:
                for check in [*outcome[0], *checks]:
                    docker.out(check.line())
                return time.monotonic() - started
        time.sleep(1.0)
    raise DockerError("not healthy in time: " + "; ".join(c.line() for c in checks if not c.ok))


def up(docker: Docker, host: Host, options: LocalOptions) -> dict[str, Any]:
    """Everything up to a healthy stack; returns the figures (also in options.figures)."""
    state = EngineState.load(options.state_dir) or EngineState(network=snapshot(), stack=options.stack)
    figures = options.figures
    figures.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), kernel=platform.release())
    autoscaler = (docker.environ.get("AUTOSCALER") or LOCAL_DEFAULTS["AUTOSCALER"]) != "0"
    images = fleet_images(parse_fleet(options.workers), autoscaler)
    check_toolchains(images, options.upstream_images)
    _ensure_engine(docker, state, options)
    version = docker.query("version", "--format", "{{.Server.Version}}", echo=False)
    figures["engine"] = version.stdout.strip() if version else ""
    _ensure_swarm(docker, state)
    listed = docker.query("volume", "ls", "--format", "{{.Name}}", echo=False)
    state.volumes_before = listed.lines() if listed else []
    state.save(options.state_dir)
    started = time.monotonic()
    figures["standins_s"] = {} if options.upstream_images else make_standins(docker, host, images)
    with tempfile.TemporaryDirectory(prefix="lab-swarm-ca-") as tmp:
        extra_ca = extra_ca_bundle(options, Path(tmp) / "extra-ca.pem", docker.out)
        base_args = {} if options.upstream_images else IMAGE_BUILD_ARGS
        figures["images"] = build_images(docker, options.tag, extra_ca, base_args, images=images)
    figures["build_total_s"] = round(time.monotonic() - started, 1)
    state.secrets_created = ensure_secrets(docker, options.stack, interactive=lambda: False)
    state.save(options.state_dir)
    started = time.monotonic()
    deploy(docker, options)
    url = f"http://127.0.0.1:{docker.environ.get('WEB_PUBLISHED_PORT') or '8888'}"
    wait_healthy(docker, options.stack, url, options.timeout)
    figures["deploy_to_healthy_s"] = round(time.monotonic() - started, 1)
    docker.out(f"# up: the chat answers on {url}; `lab swarm local down` removes everything this made")
    return figures


def _wait_gone(docker: Docker, stack: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    label = f"label=com.docker.stack.namespace={stack}"
    while time.monotonic() < deadline:
        containers = docker.query("ps", "-aq", "--filter", label, echo=False)
        networks = docker.query("network", "ls", "-q", "--filter", label, echo=False)
        if not (containers and containers.lines()) and not (networks and networks.lines()):
            return
        time.sleep(1.0)
    docker.out(f"# warning: containers or networks of {stack} remain after {timeout:g} s")


def _remove_stack(docker: Docker, state: EngineState) -> None:
    docker.run("stack", "rm", state.stack, check=False)
    _wait_gone(docker, state.stack)
    secrets = [name for name in SECRETS if name in state.secrets_created]
    if secrets:
        docker.run("secret", "rm", *secrets, check=False)
    volumes = [f"{state.stack}_{v}" for v in VOLUMES if f"{state.stack}_{v}" not in state.volumes_before]
    if volumes:
        docker.run("volume", "rm", *volumes, check=False)
    if state.swarm_created:
        docker.run("swarm", "leave", "--force", check=False)
        docker.run("network", "rm", "docker_gwbridge", check=False)
    elif state.labels_added:
        node = docker.query("info", "--format", "{{.Swarm.NodeID}}", echo=False)
        removals = [a for label in state.labels_added for a in ("--label-rm", label)]
        if node is not None:
            docker.run("node", "update", *removals, node.stdout.strip(), check=False)


def down(docker: Docker, host: Host, state_dir: Path = STATE_DIR) -> list[str]:
    """Remove what `up` made, stop what it started, restore the network; return what still differs."""
    state = EngineState.load(state_dir)
    if state is None:
        docker.out(f"# nothing to do: no {state_dir / 'state.json'} (`lab swarm local up` writes it)")
        return []
    if daemon_answers(docker):
        _remove_stack(docker, state)
    if state.registry_pid is not None:
        stop_process(state.registry_pid, "docker-registry", docker.out)
        shutil.rmtree(state_dir / "registry", ignore_errors=True)
        (state_dir / "registry.yml").unlink(missing_ok=True)
    remaining: list[str] = []
    if state.dockerd_pid is not None:
        stop_process(state.dockerd_pid, "dockerd", docker.out, timeout=60.0)
        clean_runtime(host)
        if shutil.which("nft") is None:
            docker.out("# warning: `nft` is missing (apt-get install nftables): dockerd's nft tables are not removed")
        remaining = restore_network(host, state.network)
        for line in remaining:
            docker.out(f"# still differs from before `up`: {line}")
    (state_dir / "state.json").unlink(missing_ok=True)
    docker.out("# down: " + ("the network is as it was before `up`" if not remaining else "see the warnings above"))
    return remaining


@contextlib.contextmanager
def local_swarm(options: LocalOptions, docker: Docker | None = None) -> Iterator[Docker]:
    """`up`, then always `down` (tests and scripts): yields the docker runner."""
    docker = docker or local_docker()
    host = Host(out=docker.out)
    try:
        up(docker, host, options)
        yield docker
    finally:
        down(docker, host, options.state_dir)
