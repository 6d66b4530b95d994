"""The stack's external secrets: created from stdin (never a command line), kept unless rotated."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from lab.swarm.docker import Docker, DockerCommandError, DockerError
from lab.swarm.stack import (
    GEMINI_SECRET,
    ROTATIONS,
    SECRETS,
    UsageError,
    describe_secret,
    secret_values,
    secrets_to_create,
)

OFFLINE_NOTE = (
    "no Gemini API key: the workers will use the offline model (MODEL_MODE=auto); "
    "add a key later with `lab swarm secrets --rotate gemini --gemini-key-file FILE`"
)


class SecretsInUseError(DockerError):
    """Secrets to rotate are still used by the stack's services (Docker refuses to remove them)."""


def gemini_key(
    key_file: Path | None,
    environ: Mapping[str, str],
    *,
    dry_run: bool,
    interactive: Callable[[], bool] = sys.stdin.isatty,
    prompt: Callable[[str], str] = getpass.getpass,
) -> tuple[str, str]:
    """(key, where it came from): the file, else GEMINI_API_KEY, else a prompt on a terminal, else none.

    A missing file is a UsageError. A dry run reads no key and prompts for nothing.
    """
    if key_file is not None:
        if not key_file.is_file():
            raise UsageError(f"--gemini-key-file {key_file}: no such file")
        return ("" if dry_run else key_file.read_text().strip()), f"from {key_file}"
    if environ.get("GEMINI_API_KEY", "").strip():
        return ("" if dry_run else environ["GEMINI_API_KEY"].strip()), "from GEMINI_API_KEY"
    if interactive():
        if dry_run:
            return "", "to be typed at a prompt"
        return prompt("Gemini API key (input hidden; empty: the offline model): ").strip(), "typed at the prompt"
    return "", "none: the offline model"


def _existing(docker: Docker) -> set[str] | None:
    listed = docker.query("secret", "ls", "--format", "{{.Name}}")
    if listed is None:
        return None
    if listed.returncode != 0:
        raise DockerCommandError(f"`docker secret ls` failed: {listed.stderr.strip()}")
    return set(listed.lines())


def _remove_for_rotation(docker: Docker, stack: str, rotate: str, existing: set[str] | None) -> None:
    services = docker.query("stack", "services", stack, "--format", "{{.Name}}")
    if services is None:
        docker.out(f"# dry run: stops here if stack {stack!r} still has services (they hold the secrets)")
    elif services.lines():
        raise SecretsInUseError(
            f"stack {stack!r} is running and Docker cannot remove a secret a service uses: "
            "`lab swarm stop` (volumes and secrets are kept), wait until `docker stack ps "
            f"{stack}` lists nothing, then `lab swarm secrets --rotate {rotate}` and `lab swarm deploy`"
        )
    doomed = [name for name in ROTATIONS[rotate] if existing is None or name in existing]
    if doomed:
        docker.run("secret", "rm", *doomed)


def ensure_secrets(
    docker: Docker,
    stack: str,
    *,
    rotate: str | None = None,
    key_file: Path | None = None,
    interactive: Callable[[], bool] = sys.stdin.isatty,
    prompt: Callable[[str], str] = getpass.getpass,
) -> list[str]:
    """Create the missing secrets (or replace those of `rotate`); return the names created."""
    existing = _existing(docker)
    if rotate is not None:
        _remove_for_rotation(docker, stack, rotate, existing)
    names = secrets_to_create(existing, rotate)
    if existing is None and rotate is None:
        docker.out("# dry run: which secrets exist is not checked; only the missing ones among these get created")
    for name in SECRETS:
        if existing is not None and name in existing and name not in names:
            docker.out(f"{name} exists: kept (`lab swarm secrets --rotate` replaces it)")
    if not names:
        return []
    key, source = "", ""
    if GEMINI_SECRET in names:
        key, source = gemini_key(
            key_file, docker.environ, dry_run=docker.dry_run, interactive=interactive, prompt=prompt
        )
        if (not key and not docker.dry_run) or source.startswith("none"):
            docker.out(OFFLINE_NOTE)
    values = secret_values(names, key)
    for name in names:
        docker.run("secret", "create", name, "-", stdin=values[name], note=describe_secret(name, source), capture=True)
    return names
