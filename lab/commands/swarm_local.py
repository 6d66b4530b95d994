"""`lab swarm local up|down`: the real stack.yml on a one-node Swarm of this machine (lab.swarm.local), and
everything it made removed again. Exit codes: 0 ok, 1 failure (or, for `down`, a network not as before)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lab.commands.fleet import fleet_arg
from lab.swarm.docker import DockerError
from lab.swarm.engine import STATE_DIR, Host
from lab.swarm.local import NO_IPVS_FILE, LocalOptions, down, local_docker, up
from lab.swarm.stack import DEFAULT_STACK


def _up(args: argparse.Namespace) -> int:
    docker = local_docker()
    options = LocalOptions(
        stack=args.stack,
        tag=args.tag,
        workers=args.workers,
        start_engine=args.start_engine,
        extra_ca=args.extra_ca,
        no_extra_ca=args.no_extra_ca,
        upstream_images=args.upstream_images,
        timeout=args.timeout,
        state_dir=args.state_dir,
    )
    try:
        figures = up(docker, Host(out=docker.out), options)
    except (DockerError, OSError) as exc:
        print(f"lab swarm local up: {exc}", file=sys.stderr)
        print("lab swarm local up: `lab swarm local down` removes what was made so far", file=sys.stderr)
        return 1
    text = json.dumps(figures, indent=2)
    docker.out(text)
    if args.figures is not None:
        args.figures.write_text(text + "\n")
    return 0


def _down(args: argparse.Namespace) -> int:
    docker = local_docker()
    try:
        remaining = down(docker, Host(out=docker.out), args.state_dir)
    except (DockerError, OSError) as exc:
        print(f"lab swarm local down: {exc}", file=sys.stderr)
        return 1
    return 1 if remaining else 0


def register_local(sub: Any) -> None:
    """Add `local up` and `local down` to the `lab swarm` operations."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "local",
        help="run the real stack on a one-node Swarm of this machine (up), and remove it all again (down)",
        description="A one-node Swarm here: dockerd (if allowed), a registry on 127.0.0.1:5000, stand-in base "
        f"images, the project's images built with BuildKit, and stack.yml deployed with {NO_IPVS_FILE} (for "
        "kernels without IPVS). `down` removes all of it and restores the host's network. DEPLOY.md, section 13.",
    )
    steps = parser.add_subparsers(dest="local_command", required=True, metavar="STEP")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, default=STATE_DIR, metavar="DIR", help=f"(default: {STATE_DIR})")

    p = steps.add_parser("up", parents=[common], help="build, push and deploy; wait until healthy")
    p.set_defaults(run=_up)
    p.add_argument("--stack", default=DEFAULT_STACK, help=f"the stack's name (default: {DEFAULT_STACK})")
    p.add_argument("--tag", default="local", metavar="T", help="image tag (default: local)")
    p.add_argument(
        "--workers",
        type=fleet_arg,
        default=fleet_arg("2"),
        metavar="FLEET",
        help="the workers: a number (Python) or language=count pairs, e.g. python=1,go=1,java=1; worker-go and "
        "worker-java get 0 (and their images are not built) unless named (default: 2)",
    )
    p.add_argument("--start-engine", action="store_true", help="start dockerd when no daemon answers (down stops it)")
    p.add_argument("--extra-ca", type=Path, metavar="FILE", help="CA bundle for the builds' HTTPS (default: the "
                   "host's /usr/local/share/ca-certificates/*.crt, if any)")  # fmt: skip
    p.add_argument("--no-extra-ca", action="store_true", help="give the builds no extra CA")
    p.add_argument("--upstream-images", action="store_true", help="build on the upstream base images (no stand-ins)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to become healthy (300)")
    p.add_argument("--figures", type=Path, metavar="FILE", help="also write the timings and sizes (JSON) there")

    p = steps.add_parser("down", parents=[common], help="remove the stack, swarm, registry and engine `up` made")
    p.set_defaults(run=_down)
