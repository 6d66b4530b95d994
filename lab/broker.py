"""The local Mosquitto broker: find the binary and build its effective config."""

from __future__ import annotations

import os
import pwd
import shutil
from importlib import resources
from pathlib import Path

_FALLBACK_BINARY = Path("/usr/sbin/mosquitto")  # Debian puts it outside a normal user's PATH


class MosquittoNotFoundError(RuntimeError):
    """The mosquitto binary is not installed."""

    def __init__(self) -> None:
        super().__init__("mosquitto not found: install it with `sudo apt-get install mosquitto` (or `make setup`)")


def find_mosquitto() -> Path:
    """The path of the mosquitto binary; raises MosquittoNotFoundError when there is none."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    if os.access(_FALLBACK_BINARY, os.X_OK):
        return _FALLBACK_BINARY
    raise MosquittoNotFoundError()


def base_config() -> str:
    """The committed broker settings (services/mosquitto/mosquitto.conf), without listeners."""
    return resources.files("services.mosquitto").joinpath("mosquitto.conf").read_text(encoding="utf-8")


def effective_config(port: int, host: str = "127.0.0.1", *, user: str | None = None) -> str:
    """The committed settings plus a listener on `host:port` that accepts anonymous clients."""
    run_as = user if user is not None else pwd.getpwuid(os.geteuid()).pw_name
    lines = [
        base_config().rstrip("\n"),
        "",
        "# Added by the lab (lab/broker.py) for this run.",
        f"listener {port} {host}",
        # Authentication comes with the ACL/password templates; until then a loopback-only listener.
        "allow_anonymous true",
        # Started as root, Mosquitto would switch to its own user, and that credential change clears the
        # parent-death signal that ends it when the lab dies; staying the same user keeps it (a no-op
        # when not root).
        f"user {run_as}",
    ]
    return "\n".join(lines) + "\n"


def write_config(directory: Path, port: int, host: str = "127.0.0.1") -> Path:
    """Write the effective config into `directory` and return its path."""
    path = directory / "mosquitto.conf"
    path.write_text(effective_config(port, host), encoding="utf-8")
    return path
