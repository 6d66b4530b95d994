"""The system as a Docker Swarm stack: the stack's facts (services, images, secrets), docker itself, the
checks before a deploy, secrets, verifying a deployed stack, and checking stack.yml (``stack_check``); a
one-node Swarm on this machine (``local``, on ``engine`` and ``standins``). The `lab swarm` command is
``lab.commands.swarm``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab._lazy import lazy_exports

if TYPE_CHECKING:
    from lab.swarm.docker import Docker, DockerError
    from lab.swarm.secrets import ensure_secrets
    from lab.swarm.stack_check import reference_problems, schema_errors

__all__ = ["Docker", "DockerError", "ensure_secrets", "reference_problems", "schema_errors"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Docker": "docker",
        "DockerError": "docker",
        "ensure_secrets": "secrets",
        "reference_problems": "stack_check",
        "schema_errors": "stack_check",
    },
)
