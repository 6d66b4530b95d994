"""The one place `lab swarm` runs the `docker` client: argument lists, no shell, every command printed first.

Secrets only ever travel on a command's stdin, so the printed line (and `ps`) never shows one. With
`dry_run` nothing runs: each command is printed, and a query (whose answer would steer what comes next)
is marked as skipped so that its caller can say what it assumes instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.paths import REPO_ROOT

INSTALL_URL = "https://docs.docker.com/engine/install/"
SWARM_STATE_FORMAT = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
_GIST_CHARS = 400

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class DockerError(RuntimeError):
    """Docker cannot do what `lab swarm` asked (exit code 1)."""


class DockerNotFoundError(DockerError):
    """The `docker` client is not on PATH."""


class DaemonUnreachableError(DockerError):
    """The client is there but the daemon does not answer."""


class NotManagerError(DockerError):
    """This node is not a manager of an active swarm."""


class DockerCommandError(DockerError):
    """A docker command exited non-zero."""


@dataclass(frozen=True)
class Result:
    """What a docker command printed and how it exited."""

    returncode: int
    stdout: str = ""
    stderr: str = ""

    def lines(self) -> list[str]:
        """The non-empty lines of stdout."""
        return [line for line in self.stdout.splitlines() if line.strip()]


def gist(text: str) -> str:
    """The non-empty lines of a docker error, on one line and cut short."""
    joined = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= _GIST_CHARS else joined[: _GIST_CHARS - 3] + "..."


def command_line(args: list[str], env: Mapping[str, str] | None = None, note: str = "", program: str = "docker") -> str:
    """The shell equivalent of `docker ARGS` with `env` set, as printed before it runs."""
    prefix = "".join(f"{name}={shlex.quote(value)} " for name, value in sorted((env or {}).items()))
    return f"$ {prefix}{shlex.join([program, *args])}" + (f"  # {note}" if note else "")


class Docker:
    """Runs (or, dry, only prints) docker commands from the repository's root, where the stack files are."""

    def __init__(
        self,
        *,
        dry_run: bool = False,
        cwd: Path = REPO_ROOT,
        environ: Mapping[str, str] | None = None,
        out: Callable[[str], None] | None = None,
        runner: Runner = subprocess.run,
        client: str | None = None,
    ) -> None:
        self.dry_run = dry_run
        # A client by path (e.g. Debian's own /usr/bin/docker for BuildKit), printed as such; else `docker`.
        self.client = client
        self.cwd = cwd
        self.environ = dict(os.environ if environ is None else environ)
        self.out = out or (lambda line: print(line, flush=True))
        self._runner = runner

    @property
    def program(self) -> str:
        """The client as printed: `docker`, or the path it was given."""
        return self.client or "docker"

    def executable(self) -> str:
        """The path of the `docker` client, or DockerNotFoundError saying how to install it."""
        if self.client is not None:
            return self.client
        found = shutil.which("docker", path=self.environ.get("PATH", os.defpath))
        if found is None:
            raise DockerNotFoundError(
                f"docker: command not found; install Docker Engine: {INSTALL_URL} "
                "(on Debian/Ubuntu: `sudo apt-get install docker.io`), then run this again"
            )
        return found

    def query(self, *args: str, echo: bool = True) -> Result | None:
        """Run a read-only command and capture its output; None in a dry run (skipped: it needs the daemon)."""
        if echo:
            self.out(command_line(list(args), note="skipped: dry run" if self.dry_run else "", program=self.program))
        if self.dry_run:
            return None
        return self._execute(list(args), capture=True)

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        note: str = "",
        capture: bool = False,
        check: bool = True,
    ) -> Result | None:
        """Run a command that changes something (output straight to the terminal unless `capture`).

        `stdin` is fed to the command and never printed; `env` is added to the environment and printed.
        Raises DockerCommandError on a non-zero exit when `check`; returns None in a dry run.
        """
        self.out(command_line(list(args), env, note, self.program))
        if self.dry_run:
            return None
        result = self._execute(list(args), stdin=stdin, env=env, capture=capture or stdin is not None)
        if check and result.returncode != 0:
            detail = gist(result.stderr) or "its output is above"
            raise DockerCommandError(f"`docker {' '.join(args[:2])}` failed (exit {result.returncode}): {detail}")
        return result

    def _execute(
        self, args: list[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None, capture: bool
    ) -> Result:
        completed = self._runner(
            [self.executable(), *args],
            input=stdin,
            capture_output=capture,
            text=True,
            cwd=self.cwd,
            env={**self.environ, **(env or {})},
            check=False,
        )
        return Result(completed.returncode, completed.stdout or "", completed.stderr or "")

    def require_daemon(self) -> str:
        """Check the client and the daemon; return `docker info`'s '<swarm state> <manager>' ('' in a dry run)."""
        result = self.query("info", "--format", SWARM_STATE_FORMAT)
        if result is None:
            self.out("# dry run: the daemon and the swarm are not checked")
            return ""
        if result.returncode != 0:
            raise DaemonUnreachableError(
                f"the Docker daemon is unreachable (`docker info` failed: {gist(result.stderr) or 'no message'}); "
                "start it (`sudo systemctl start docker`), or point DOCKER_HOST or `docker context use` at a "
                "running one; without root, add yourself to the docker group (`sudo usermod -aG docker $USER`)"
            )
        return result.stdout.strip()

    def require_manager(self) -> None:
        """Check that this node is a manager of an active swarm (NotManagerError says how to get there)."""
        state = self.require_daemon()
        if not state:
            return
        local_state, _, control = state.partition(" ")
        if local_state == "inactive":
            raise NotManagerError(
                "this Docker is not part of a swarm: create one with `docker swarm init` "
                "(add `--advertise-addr IP` when the machine has several addresses), "
                "or join an existing one with `docker swarm join --token TOKEN MANAGER_IP:2377`"
            )
        if local_state == "locked":
            raise NotManagerError("the swarm is locked: `docker swarm unlock` with the unlock key, then try again")
        if local_state != "active":
            raise NotManagerError(
                f"this node's swarm state is {local_state!r}, not 'active': wait for it to join, or "
                "`docker swarm leave --force` and `docker swarm init` / `docker swarm join` again"
            )
        if control != "true":
            raise NotManagerError(
                "this node is a swarm worker, not a manager: run `lab swarm` on a manager "
                "(`docker node ls` works there), or promote this node there with `docker node promote NODE`"
            )
