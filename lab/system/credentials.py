"""Per-cluster MQTT credentials: random passwords for the broker's users and Mosquitto's password file."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Literal

User = Literal["master", "worker", "observer"]
USERS: tuple[User, ...] = ("master", "worker", "observer")

# Mosquitto 2's own format (what `mosquitto_passwd` writes): `$7$` = PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt.
_HASH_ID = 7
_ROUNDS = 101
_SALT_BYTES = 12


def _new_password() -> str:
    """A random password that needs no quoting anywhere (URL-safe base64, 192 bits)."""
    return secrets.token_urlsafe(24)


def new_operator_token() -> str:
    """A random operator token (the master's OPERATOR_TOKEN: /metrics, /api/status, the dashboard), 256 bits,
    URL-safe: it goes in a URL's fragment and an `Authorization: Bearer` header as it is."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Credentials:
    """The passwords of the broker's users; never shown by repr, so a logged cluster leaks nothing."""

    master: str = field(default_factory=_new_password, repr=False)
    worker: str = field(default_factory=_new_password, repr=False)
    observer: str = field(default_factory=_new_password, repr=False)

    def password(self, user: User) -> str:
        """The password of `user`."""
        value: str = getattr(self, user)
        return value

    def login(self, user: User) -> tuple[str, str]:
        """(username, password) of `user`, e.g. for paho's `username_pw_set(*login)`."""
        return user, self.password(user)


def password_hash(password: str, salt: bytes | None = None) -> str:
    """The password-file hash of `password` as Mosquitto 2 writes it (`$7$101$<salt>$<hash>`).

    Computed here rather than by running `mosquitto_passwd -b`, which would put every password on a command
    line that any local user can read in `ps`.
    """
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, _ROUNDS)
    encoded = [base64.b64encode(part).decode("ascii") for part in (salt, digest)]
    return f"${_HASH_ID}${_ROUNDS}${encoded[0]}${encoded[1]}"


def password_file(credentials: Credentials) -> str:
    """The text of Mosquitto's password file for every user of `credentials`."""
    return "".join(f"{user}:{password_hash(credentials.password(user))}\n" for user in USERS)
