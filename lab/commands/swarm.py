"""`lab swarm ...`: build, deploy, verify and operate the system as the Docker Swarm stack of stack.yml.

Every docker command is printed before it runs (`--dry-run`: printed only, no daemon needed); secrets go to
docker on stdin and are never printed. Exit codes: 0 ok, 1 failure, 2 bad arguments. DEPLOY.md is the guide.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.commands.fleet import fleet_arg
from lab.commands.swarm_local import register_local
from lab.swarm import verify as swarm_verify
from lab.swarm.docker import Docker, DockerError
from lab.swarm.preflight import check_labels, check_network
from lab.swarm.secrets import ensure_secrets
from lab.swarm.stack import (
    DEFAULT_REGISTRY,
    DEFAULT_STACK,
    DEFAULT_TAG,
    DEFAULT_WEB_PORT,
    DOCKERFILES,
    IMAGES,
    MOSQUITTO_FILES,
    ROTATIONS,
    SECRETS,
    SERVICES,
    SINGLETONS,
    VOLUMES,
    WORKER_SERVICES,
    WORKER_VARIABLES,
    SecretPlanError,
    UsageError,
    build_commands,
    config_version,
    deploy_command,
    deploy_env,
    dockerfile_args,
    service_image,
    stack_service,
)

Operation = Callable[[Docker, argparse.Namespace], int]


def count(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seconds(text: str) -> float:
    """An argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _registry(docker: Docker, args: argparse.Namespace) -> tuple[str, str]:
    registry = args.registry or docker.environ.get("REGISTRY") or DEFAULT_REGISTRY
    return registry, args.tag or docker.environ.get("TAG") or DEFAULT_TAG


def build_arg(text: str) -> tuple[str, str]:
    """An argparse type: NAME=VALUE (a build argument such as GO_IMAGE=mirror.example/library/golang:1.26)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value:
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE, got {text!r}")
    return name.strip(), value


def image_services(text: str) -> list[str]:
    """An argparse type: services built from this repository, comma-separated (`worker-go,worker-java`)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in IMAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(IMAGES)}, got {text!r}")
    return names


def _check_key_file(args: argparse.Namespace) -> None:
    if args.gemini_key_file is not None and not args.gemini_key_file.is_file():
        raise UsageError(f"--gemini-key-file {args.gemini_key_file}: no such file")


def build(docker: Docker, args: argparse.Namespace) -> int:
    """Build the images (the master's and the three workers', or those of --only) from the repository's root
    (and push them)."""
    if args.extra_ca is not None and not args.extra_ca.is_file():
        raise UsageError(f"--extra-ca {args.extra_ca}: no such file")
    docker.require_daemon()
    registry, tag = _registry(docker, args)
    chosen = {IMAGES[service] for service in args.only} if args.only else set(IMAGES.values())
    names = [name for name in DOCKERFILES if name in chosen]
    for name in names:
        dockerfile = DOCKERFILES[name]
        if not (docker.cwd / dockerfile).is_file():
            if not docker.dry_run:
                raise DockerError(
                    f"{docker.cwd / dockerfile} is missing: cannot build its image "
                    "(`--only` builds the others, e.g. `--only master,worker-python,worker-go`)"
                )
            docker.out(f"# warning: {dockerfile} is missing: this build would fail")
    base_args = dict(args.build_arg or [])
    unused = sorted(set(base_args) - {a for n in names for a in dockerfile_args(docker.cwd / DOCKERFILES[n])})
    if unused:
        raise UsageError(f"--build-arg {', '.join(unused)}: no Dockerfile built here declares it")
    # BuildKit for the extra CA's secret mount (the default builder of Docker 23 and newer anyway).
    env = {"DOCKER_BUILDKIT": "1"} if args.extra_ca is not None else None
    for command in build_commands(registry, tag, args.push, names, base_args, args.extra_ca, docker.cwd):
        docker.run(*command, env=env if command[0] == "build" else None)
    if not args.push:
        docker.out(f"# not pushed: every node pulls from {registry}, so `lab swarm build --push` before deploying")
    return 0


def deploy(docker: Docker, args: argparse.Namespace) -> int:
    """Check the swarm, create missing secrets, then `docker stack deploy` with CONFIG_VERSION set."""
    _check_key_file(args)
    docker.require_manager()
    check_labels(docker)
    check_network(docker, args.stack, args.encrypt)
    ensure_secrets(docker, args.stack, key_file=args.gemini_key_file)
    version = config_version(docker.cwd)
    docker.out(f"# CONFIG_VERSION={version}: a hash of {', '.join(MOSQUITTO_FILES)} (new files, new config names)")
    registry, tag = _registry(docker, args)
    env = deploy_env(docker.environ, registry=registry, tag=tag, version=version, workers=args.workers)
    if args.workers is not None:
        replicas = ", ".join(f"{WORKER_SERVICES[lang]} {env[var]}" for lang, var in WORKER_VARIABLES.items())
        docker.out(f"# --workers names the whole fleet ({replicas}): a language it does not name gets 0")
    if args.baseline:
        docker.out("# --baseline: anonymous MQTT clients may join as workers (DEPLOY.md, Baseline workers)")
    docker.run(*deploy_command(args.stack, args.encrypt, args.baseline), env=env)
    docker.out(f"# deployed; `lab swarm verify --stack {args.stack}` waits until it converges and asks one question")
    return 0


def secrets(docker: Docker, args: argparse.Namespace) -> int:
    """Create the missing secrets (or rotate some)."""
    _check_key_file(args)
    docker.require_manager()
    ensure_secrets(docker, args.stack, rotate=args.rotate, key_file=args.gemini_key_file)
    return 0


def verify(docker: Docker, args: argparse.Namespace) -> int:
    """Converged, running, healthy, and one question answered: PASS/FAIL per check."""
    docker.require_manager()
    url = (args.url or f"http://127.0.0.1:{docker.environ.get('WEB_PUBLISHED_PORT') or DEFAULT_WEB_PORT}").rstrip("/")
    checks = swarm_verify.verify(docker, args.stack, url, args.timeout)
    for check in checks:
        docker.out(check.line())
    failed = [c for c in checks if not c.ok]
    if checks:
        docker.out(f"verify: {len(checks) - len(failed)} of {len(checks)} checks passed")
    return 1 if failed else 0


def status(docker: Docker, args: argparse.Namespace) -> int:
    """The stack's services and running tasks."""
    docker.require_manager()
    docker.run("stack", "services", args.stack)
    docker.run("stack", "ps", args.stack, "--filter", "desired-state=running")
    return 0


def logs(docker: Docker, args: argparse.Namespace) -> int:
    """The logs of one service (or, without --follow, of each in turn)."""
    if args.follow and args.service is None:
        raise UsageError("--follow follows one service, e.g. `lab swarm logs worker-python --follow`")
    docker.require_manager()
    options = [
        "--timestamps",
        *(["--follow"] if args.follow else []),
        *(["--tail", str(args.tail)] if args.tail is not None else []),
    ]
    for service in [args.service] if args.service else SERVICES:
        docker.run("service", "logs", *options, stack_service(args.stack, service))
    return 0


def scale(docker: Docker, args: argparse.Namespace) -> int:
    """Set a service's replicas (the master and the broker: 0 or 1)."""
    if args.service in SINGLETONS and args.replicas > 1:
        raise UsageError(f"{args.service} keeps its state in a volume on one node: 0 or 1 replica, not {args.replicas}")
    docker.require_manager()
    docker.run("service", "scale", f"{stack_service(args.stack, args.service)}={args.replicas}")
    docker.out("# until the next `lab swarm deploy`, which sets the replicas of stack.yml (--workers) again")
    return 0


# The state of a service's last update (empty when it never had one: UpdateStatus is then absent).
UPDATE_STATE = "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}"


def update(docker: Docker, args: argparse.Namespace) -> int:
    """Rolling update of the lab's services to another image tag (one task at a time, rollback on failure)."""
    services = args.services or list(IMAGES)
    for service in services:
        if service == "mosquitto":
            raise UsageError("mosquitto's image is pinned in stack.yml: change it there and `lab swarm deploy`")
        if service not in IMAGES:
            raise UsageError(f"unknown service {service!r}: choose from {', '.join(IMAGES)}")
    docker.require_manager()
    registry, tag = _registry(docker, args)
    for service in services:
        name = stack_service(args.stack, service)
        try:
            docker.run(
                "service", "update", "--image", service_image(service, registry, tag), "--with-registry-auth", name
            )
        except DockerError as exc:
            raise DockerError(
                f"{exc}; a failed update rolls back by itself: `lab swarm logs {service}` says why"
            ) from exc
        # Some clients (Debian's 20.10) exit 0 from an update that Swarm rolled back: ask the service.
        state = docker.query("service", "inspect", "--format", UPDATE_STATE, name, echo=False)
        if state is not None and state.stdout.strip().startswith("rollback"):
            raise DockerError(
                f"the update of {service} to {tag} failed and Swarm rolled it back ({state.stdout.strip()}): "
                f"`lab swarm logs {service}` says why"
            )
    docker.out("# the next `lab swarm deploy` sets the images of --tag (or TAG) again")
    return 0


def rollback(docker: Docker, args: argparse.Namespace) -> int:
    """Return a service to its previous specification (image, replicas...)."""
    docker.require_manager()
    docker.run("service", "rollback", stack_service(args.stack, args.service))
    return 0


def stop(docker: Docker, args: argparse.Namespace) -> int:
    """Remove the stack's services, networks and configs; its volumes and the secrets stay."""
    docker.require_manager()
    docker.run("stack", "rm", args.stack)
    volumes = ", ".join(f"{args.stack}_{v}" for v in VOLUMES)
    docker.out(
        f"# kept: the volumes {volumes} (on the nodes that ran them) and the secrets {', '.join(SECRETS)}; "
        "`lab swarm deploy` uses them again. To delete them: `docker volume rm` on each node, `docker secret rm`"
    )
    return 0


def _wrap(operation: Operation) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        docker = Docker(dry_run=args.dry_run)
        if args.dry_run:
            docker.out("# dry run: printing the docker commands, running none")
        try:
            return operation(docker, args)
        except UsageError as exc:
            print(f"lab swarm {args.swarm_command}: {exc}", file=sys.stderr)
            return 2
        except (DockerError, SecretPlanError, OSError, ValueError) as exc:
            print(f"lab swarm {args.swarm_command}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    return run


def _add(
    sub: Any, name: str, operation: Operation, common: argparse.ArgumentParser, help: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help, description=help)
    parser.set_defaults(run=_wrap(operation))
    return parser


def _image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", metavar="R", help=f"image registry (default: $REGISTRY or {DEFAULT_REGISTRY})")
    parser.add_argument("--tag", metavar="T", help=f"image tag (default: $TAG or {DEFAULT_TAG})")


def register(commands: Any) -> None:
    """Add the `swarm` subcommand (and its operations) to the `lab` parser's subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "swarm",
        help="build, deploy, verify and operate the Docker Swarm stack (DEPLOY.md)",
        description="Operate the system as the Docker Swarm stack of stack.yml. Every docker command is printed "
        "before it runs; --dry-run only prints them. DEPLOY.md walks through a swarm from zero.",
    )
    sub = parser.add_subparsers(dest="swarm_command", required=True, metavar="OPERATION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=DEFAULT_STACK, help=f"the stack's name (default: {DEFAULT_STACK})")
    common.add_argument("--dry-run", action="store_true", help="print the docker commands, run none (no daemon needed)")

    p = _add(sub, "build", build, common, "build the master's and the workers' images (and push them)")
    _image_options(p)
    p.add_argument("--push", action="store_true", help="push the images to the registry")
    p.add_argument(
        "--only",
        type=image_services,
        action="extend",
        metavar="SERVICE[,SERVICE]",
        help=f"build only these services' images (default: all of {', '.join(IMAGES)})",
    )
    p.add_argument(
        "--build-arg",
        type=build_arg,
        action="append",
        metavar="NAME=VALUE",
        help="a base image elsewhere (a mirror): PYTHON_IMAGE, NODE_IMAGE, GO_IMAGE, BASE_IMAGE...; given to "
        "each Dockerfile that declares it (repeatable)",
    )
    p.add_argument("--extra-ca", type=Path, metavar="FILE", help="a proxy's CA (PEM) as the build secret extra_ca")

    p = _add(sub, "secrets", secrets, common, "create the stack's missing secrets (values on stdin, never printed)")
    p.add_argument("--gemini-key-file", type=Path, metavar="F", help="the Gemini key (else $GEMINI_API_KEY, a prompt)")
    p.add_argument(
        "--rotate",
        nargs="?",
        const="all",
        choices=list(ROTATIONS),
        help="replace secrets (all, mqtt, gemini, operator or journal; the stack must be stopped: Docker keeps "
        "secrets in use; DEPLOY.md section 6 rotates the operator token with a rolling update of the master)",
    )

    p = _add(sub, "deploy", deploy, common, "check the swarm, create missing secrets, deploy the stack")
    _image_options(p)
    p.add_argument("--encrypt", action="store_true", help="encrypt the overlay network (adds stack.encrypted.yml)")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="let the original system's workers join anonymously (adds stack.baseline.yml; DEPLOY.md says what "
        "it gives up)",
    )
    p.add_argument(
        "--workers",
        type=fleet_arg,
        metavar="FLEET",
        help="the workers: a number (Python) or language=count pairs, e.g. python=2,go=2,java=2; sets WORKERS, "
        "WORKERS_GO and WORKERS_JAVA, 0 for a language not named (default: those variables, or 2 of each)",
    )
    p.add_argument("--gemini-key-file", type=Path, metavar="F", help="the Gemini key, if its secret is missing")

    p = _add(sub, "verify", verify, common, "check convergence, task health, and one question answered")
    p.add_argument("--url", help="the master's web URL (default: http://127.0.0.1:$WEB_PUBLISHED_PORT, 8888)")
    p.add_argument("--timeout", type=seconds, default=120.0, metavar="S", help="how long to wait (default: 120)")

    _add(sub, "status", status, common, "the stack's services and running tasks")

    p = _add(sub, "logs", logs, common, "the logs of a service (default: each in turn)")
    p.add_argument("service", nargs="?", choices=SERVICES, metavar="SERVICE", help=", ".join(SERVICES))
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (one SERVICE)")
    p.add_argument("--tail", type=count, metavar="N", help="only the last N lines of each task")

    p = _add(sub, "scale", scale, common, "set a service's replicas (usually a worker-*)")
    p.add_argument("service", choices=SERVICES, metavar="SERVICE", help=", ".join(SERVICES))
    p.add_argument("replicas", type=count, metavar="N", help="replicas (master and mosquitto: 0 or 1)")

    p = _add(sub, "update", update, common, "rolling update to another image tag (rollback on failure)")
    _image_options(p)
    p.add_argument("services", nargs="*", metavar="SERVICE", help=f"default: {' '.join(IMAGES)}")

    p = _add(sub, "rollback", rollback, common, "return a service to its previous specification")
    p.add_argument("service", choices=SERVICES, metavar="SERVICE", help=", ".join(SERVICES))

    _add(sub, "stop", stop, common, "remove the stack (docker stack rm), keeping its volumes and the secrets")

    register_local(sub)
