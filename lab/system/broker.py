"""The local Mosquitto broker: find the binary and write its effective config, password file and ACL."""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lab.system.credentials import Credentials, password_file
from services.protocol.topics import DEFAULT_PREFIX, Topics

_FALLBACK_BINARY = Path("/usr/sbin/mosquitto")  # Debian puts it outside a normal user's PATH
CONFIG_NAME = "mosquitto.conf"
PASSWORD_FILE_NAME = "mosquitto.passwd"
ACL_FILE_NAME = "mosquitto.acl"
DATA_DIR_NAME = "mosquitto-data"
# Baseline mode: the broker's log also on `$SYS/broker/log/...`, subscriptions included (the same lines as in
# services/mosquitto/swarm.baseline.conf; services/master/broker_log.py reads them).
BROKER_LOG_LINES = ["log_dest topic", "log_type subscribe"]


@dataclass(frozen=True)
class BrokerTls:
    """PEM files for a TLS listener: the CA that signed the broker's certificate (the services verify the
    broker against it), the certificate and its private key."""

    ca: Path
    cert: Path
    key: Path

    def absolute(self) -> BrokerTls:
        """The same files by absolute paths (the lab's processes run in the repository, not the caller's cwd)."""
        return BrokerTls(self.ca.absolute(), self.cert.absolute(), self.key.absolute())


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


def _committed(name: str) -> str:
    """A file of services/mosquitto."""
    return resources.files("services.mosquitto").joinpath(name).read_text(encoding="utf-8")


def base_config() -> str:
    """The committed broker settings (services/mosquitto/mosquitto.conf), without listeners."""
    return _committed("mosquitto.conf")


def acl_template() -> str:
    """The committed ACL (services/mosquitto/acl.template), with `{prefix}` placeholders."""
    return _committed("acl.template")


def baseline_acl_template() -> str:
    """The anonymous clients' rules of baseline mode (services/mosquitto/acl.baseline.template)."""
    return _committed("acl.baseline.template")


def render_acl(topic_prefix: str, *, baseline: bool = False) -> str:
    """The ACL file for `topic_prefix`; with `baseline`, anonymous clients (the original system's workers)
    get the rules of acl.baseline.template, which must come before any `user` line."""
    Topics(topic_prefix)  # raises ValueError on wildcards
    # One line per rule, and `%` starts a pattern substitution: either in a prefix would change the rules.
    if any(c in topic_prefix for c in "%\n\r\0") or topic_prefix != topic_prefix.strip():
        raise ValueError(f"topic prefix {topic_prefix!r} cannot be used in an ACL file")
    template = baseline_acl_template() + acl_template() if baseline else acl_template()
    return template.replace("{prefix}", topic_prefix)


def effective_config(
    port: int,
    host: str = "127.0.0.1",
    *,
    user: str | None = None,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    persistence_dir: Path | None = None,
    tls: BrokerTls | None = None,
    baseline: bool = False,
) -> str:
    """The committed settings plus a listener on `host:port`, then authentication and persistence.

    Without `password_file` the listener accepts anonymous clients; with it, only its users, and `acl_file`
    (if given) limits what each may do. With `persistence_dir`, retained messages, sessions and their queued
    QoS 1 messages are saved there and survive a restart of the broker. With `tls`, the listener speaks
    only TLS (1.2 or later) with that certificate; plain MQTT clients cannot connect. With `baseline`, clients
    without a login are admitted next to the users (when there are users), limited by the ACL's anonymous
    rules, and the broker publishes its log on `$SYS/broker/log/...`, subscriptions included, where the
    master sees workers without a Last Will disconnect.
    """
    run_as = user if user is not None else pwd.getpwuid(os.geteuid()).pw_name
    lines = [
        base_config().rstrip("\n"),
        "",
        "# Added by the lab (lab/broker.py) for this run; later lines override the committed ones.",
        f"listener {port} {host}",
    ]
    if tls is not None:
        # Options of the listener above; tls_version is the minimum in Mosquitto 2.
        lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}", "tls_version tlsv1.2"]
    lines += [
        # Started as root, Mosquitto would switch to its own user, and that credential change clears the
        # parent-death signal that ends it when the lab dies; staying the same user keeps it (a no-op
        # when not root).
        f"user {run_as}",
    ]
    if password_file is None:
        lines.append("allow_anonymous true")
    else:
        lines += [f"allow_anonymous {'true' if baseline else 'false'}", f"password_file {password_file}"]
    if acl_file is not None:
        lines.append(f"acl_file {acl_file}")
    if baseline:
        lines += BROKER_LOG_LINES
    if persistence_dir is not None:
        # Saved on a clean stop (SIGTERM) and every autosave interval; the location must end with a slash.
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by the owner only (Mosquitto warns about wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def write_config(
    directory: Path,
    port: int,
    host: str = "127.0.0.1",
    *,
    topic_prefix: str = DEFAULT_PREFIX,
    credentials: Credentials | None = None,
    persistence: bool = False,
    tls: BrokerTls | None = None,
    baseline: bool = False,
) -> Path:
    """Write the effective config into `directory` (and, with `credentials`, the password file and the ACL
    for `topic_prefix`; with `persistence`, a data directory); with `tls`, the listener uses those files.
    With `baseline` (and `credentials`), anonymous clients are admitted too, with the ACL's baseline rules.
    Return the config's path."""
    password_path = acl_path = data_dir = None
    if credentials is not None:
        password_path, acl_path = directory / PASSWORD_FILE_NAME, directory / ACL_FILE_NAME
        _write_private(password_path, password_file(credentials))
        _write_private(acl_path, render_acl(topic_prefix, baseline=baseline))
    if persistence:
        data_dir = directory / DATA_DIR_NAME
        data_dir.mkdir(mode=0o700, exist_ok=True)
    path = directory / CONFIG_NAME
    text = effective_config(
        port,
        host,
        password_file=password_path,
        acl_file=acl_path,
        persistence_dir=data_dir,
        tls=tls,
        baseline=baseline,
    )
    _write_private(path, text)
    return path
