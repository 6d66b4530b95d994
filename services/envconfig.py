"""Settings read from, and rendered back into, environment variables, with errors that name the variable.

Each setting names its variable once, where its dataclass field is declared (`setting("MQTT_HOST", ...)`);
`from_env` reads through those names, `to_env`/`env_of` render settings back into an environment, and
`env_name` gives a field's variable to anyone who must name it. A setting may also be read from another
system's variables (`Alias`, e.g. the original system's `MQTT_BROKER`) when its own is unset.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.loop import CHOICES as LOOP_CHOICES
from services.protocol.topics import DEFAULT_PREFIX, Topics

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def env_bool(value: str | None, default: bool) -> bool:
    """Read a boolean: 1/true/yes/on or 0/false/no/off (any case); empty means the default."""
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


class Env:
    """Typed reads of one environment mapping; a bad value is a ValueError that names the variable."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    def with_values(self, values: Mapping[str, str]) -> Env:
        """This environment with `values` set over it (an alias read as the variable it stands for)."""
        return Env(ChainMap(dict(values), dict(self._env)))

    def text(self, name: str, default: str) -> str:
        """A string; empty or unset means the default."""
        return self._env.get(name, "").strip() or default

    def optional(self, name: str, default: None = None) -> str | None:
        """A string or None when empty or unset."""
        return self._env.get(name, "").strip() or None

    def secret(self, name: str, default: None = None) -> str | None:
        """A secret given directly (`NAME`) or, as Docker secrets are, in a file (`NAME_FILE`)."""
        direct = self.optional(name)
        path = self.secret_file(name)
        if direct is not None or path is None:
            return direct
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError as e:
            raise ValueError(f"{file_variable(name)}: cannot read {path} ({e.strerror})") from None

    def secret_file(self, name: str) -> str | None:
        """The file (`NAME_FILE`) the secret `NAME` is read from, or None when it is given directly or not at all."""
        path = self.optional(file_variable(name))
        return None if self.optional(name) is not None else path

    def existing_file(self, name: str, default: None = None) -> str | None:
        """A path that must name a readable file, or None when unset."""
        path = self.optional(name)
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{name}: no such file {path}")
        return path

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        """A finite number, at least `minimum`."""
        raw = self._env.get(name, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {raw!r}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        """A whole number within [minimum, maximum]."""
        raw = self._env.get(name, "").strip()
        try:
            value = int(raw) if raw else default
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"{name} must be {bound}, got {raw!r}")
        return value

    def port(self, name: str, default: int) -> int:
        """A TCP port (0 is not a valid port to connect to or to advertise)."""
        return self.integer(name, default, 1, 65535)

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean (see `env_bool`)."""
        try:
            return env_bool(self._env.get(name), default)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        """One of `options` (case-insensitive)."""
        value = self.text(name, default).lower()
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        return value

    def topic_prefix(self, name: str, default: str) -> str:
        """An MQTT topic prefix without wildcards."""
        value = self.text(name, default)
        try:
            Topics(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        return value

    def matching(self, name: str, default: str, pattern: str, what: str) -> str:
        """A string that matches `pattern` (described as `what` in the error)."""
        value = self.text(name, default)
        if value and not re.fullmatch(pattern, value):
            raise ValueError(f"{name} must be {what}, got {value!r}")
        return value

    def upper(self, name: str, default: str) -> str:
        """A string in upper case (a logging level)."""
        return self.text(name, default).upper()

    def words(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma-separated list; blanks around and between the commas are dropped."""
        found = tuple(w.strip() for w in self._env.get(name, "").split(",") if w.strip())
        return found or default


def file_variable(name: str) -> str:
    """The variable that names the file a secret is read from (Docker secrets): `NAME_FILE`."""
    return f"{name}_FILE"


# -- another system's variables ---------------------------------------------------------------------------------

# A host name or address without port, scheme, login or path (no IPv6 literal).
HOST_PATTERN = r"[^\s:/@\[\]]+"
MQTT_BROKER = "MQTT_BROKER"
MAX_PORT = 65535
# The original's broker: `mosquitto`, `mosquitto:1883`, `mqtt://mosquitto`, `mqtt://mosquitto:1884`.
_BROKER = re.compile(rf"(?:(?i:mqtt)://)?({HOST_PATTERN})(?::([0-9]{{1,5}}))?")


def mqtt_broker(env: Env) -> tuple[str, int | None] | None:
    """The original system's `MQTT_BROKER`, a host or a URL, with or without port, as (host, port or None);
    None when unset. A bad one is a ValueError naming MQTT_BROKER."""
    raw = env.optional(MQTT_BROKER)
    if raw is None:
        return None
    match = _BROKER.fullmatch(raw)
    port = int(match[2]) if match and match[2] else None
    if match is None or (port is not None and not 1 <= port <= MAX_PORT):
        raise ValueError(f"{MQTT_BROKER} must be host, host:port or mqtt://host[:port], got {raw!r}")
    return match[1], port


def broker_host(env: Env) -> str | None:
    """MQTT_BROKER's host, for MQTT_HOST."""
    broker = mqtt_broker(env)
    return None if broker is None else broker[0]


def broker_port(env: Env) -> str | None:
    """MQTT_BROKER's port, for MQTT_PORT (None: it has none)."""
    broker = mqtt_broker(env)
    return None if broker is None or broker[1] is None else str(broker[1])


# -- settings that know their variables -----------------------------------------------------------------------

# Where a field keeps its variable: `dataclasses.field(metadata={ENV: Variable(...)})`.
ENV = "env"
Reader = Callable[..., Any]


@dataclass(frozen=True)
class Variable:
    """The environment variable of one setting, and how to read it: `read(Env, name, default, **options)`."""

    name: str
    read: Reader
    options: Mapping[str, Any]
    # For a secret: the field that keeps the file it was read from, which `to_env` renders instead of the value.
    file_field: str | None = None
    # Other systems' variables this setting is also read from, when its own is unset.
    aliases: tuple[Alias, ...] = ()

    def read_from(self, env: Env, default: Any) -> Any:
        """This setting's value in `env`: its own variable when set, else the first alias that gives one, else
        the default. An alias that is set is checked even when the own variable wins (a bad value is an error
        wherever it is)."""
        derived = [text for alias in self.aliases if (text := alias.derive(env)) is not None]
        if derived and env.optional(self.name) is None:
            env = env.with_values({self.name: derived[0]})
        return self.read(env, self.name, default, **self.options)


@dataclass(frozen=True)
class Alias:
    """Another system's variables (`names`) that stand for a setting when its own variable is unset:
    `derive(env)` checks them and gives the text the own variable would hold, or None when they say nothing
    about the setting; a bad value is a ValueError naming the alias's variable."""

    names: tuple[str, ...]
    derive: Callable[[Env], str | None]


def setting(
    name: str,
    default: Any = dataclasses.MISSING,
    read: Reader = Env.text,
    *,
    factory: Callable[[], Any] | None = None,
    file_field: str | None = None,
    aliases: tuple[Alias, ...] = (),
    repr: bool = True,
    **options: Any,
) -> Any:
    """A dataclass field read from the variable `name` with the `Env` method `read` (extra keywords go to it):
    `mqtt_port: int = setting("MQTT_PORT", 1883, Env.port)`; `aliases`: other variables that stand for it."""
    variable = Variable(name, read, options, file_field, aliases)
    if factory is not None:
        return field(default_factory=factory, metadata={ENV: variable}, repr=repr)
    return field(default=default, metadata={ENV: variable}, repr=repr)


def render(value: object) -> str | None:
    """A setting's value as an environment variable reads it back (None: leave the variable out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        short = f"{value:g}"  # 10.0 -> "10", 0.25 -> "0.25"; repr when that loses digits
        return short if float(short) == value else repr(value)
    return str(value)


S = TypeVar("S", bound="EnvSettings")


@dataclass(frozen=True)
class EnvSettings:
    """A frozen dataclass whose fields declare their variables with `setting(...)`."""

    @classmethod
    def variables(cls) -> dict[str, Variable]:
        """Each field's variable, by field name, in declaration order."""
        return {f.name: f.metadata[ENV] for f in dataclasses.fields(cls) if ENV in f.metadata}

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The variable a field is read from: `MasterSettings.env_name("web_port") == "WEB_PORT"`."""
        try:
            return cls.variables()[field_name].name
        except KeyError:
            raise KeyError(f"{cls.__name__} has no setting {field_name!r}") from None

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every variable these settings read, the `NAME_FILE` of each secret and the aliases included."""
        variables = cls.variables().values()
        names = {v.name for v in variables} | {file_variable(v.name) for v in variables if v.file_field}
        return frozenset(names | {name for v in variables for alias in v.aliases for name in alias.names})

    @classmethod
    def read_one(cls, field_name: str, env: Mapping[str, str] | None = None) -> Any:
        """One setting from the environment (default: this process's), without reading the others."""
        variable = cls.variables().get(field_name)
        if variable is None:
            raise KeyError(f"{cls.__name__} has no setting {field_name!r}")
        return variable.read_from(Env(env), cls._default(field_name))

    @classmethod
    def _default(cls, field_name: str) -> Any:
        f = cls.__dataclass_fields__[field_name]
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default

    @classmethod
    def from_env(cls: type[S], env: Mapping[str, str] | None = None) -> S:
        """Build settings from environment variables (default: this process's), failing clearly on a bad value."""
        e = Env(env)
        values: dict[str, Any] = {}
        for name, variable in cls.variables().items():
            values[name] = variable.read_from(e, cls._default(name))
            if variable.file_field is not None:
                values[variable.file_field] = e.secret_file(variable.name)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, such that `from_env(s.to_env()) == s`: booleans as
        true/false, tuples comma-joined, None left out, a secret read from a file as its `NAME_FILE`."""
        return _render(self.variables(), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def env_of(cls, **values: Any) -> dict[str, str]:
        """Only the given settings as environment variables, by field name:
        `MasterSettings.env_of(max_in_flight_per_session=1000) == {"MAX_IN_FLIGHT_PER_SESSION": "1000"}`."""
        unknown = set(values) - set(cls.variables())
        if unknown:
            raise TypeError(f"{cls.__name__} has no setting {', '.join(sorted(unknown))}")
        return _render(cls.variables(), values)


def _render(variables: Mapping[str, Variable], values: Mapping[str, Any]) -> dict[str, str]:
    """The variables of the settings in `values` (a secret as its file when `values` has its file field)."""
    env: dict[str, str] = {}
    for name, variable in variables.items():
        if name not in values:
            continue
        path = values.get(variable.file_field) if variable.file_field is not None else None
        if path is not None:
            env[file_variable(variable.name)] = str(path)
        elif (text := render(values[name])) is not None:
            env[variable.name] = text
    return env


@dataclass(frozen=True)
class ServiceSettings(EnvSettings):
    """What every service is told: its broker (an MQTT client's settings), its log level and its event loop."""

    # The original system's MQTT_BROKER (a host or mqtt:// URL, with or without port) stands for both when they
    # are unset: MQTT_HOST, and MQTT_PORT, beat it.
    mqtt_host: str = setting("MQTT_HOST", "127.0.0.1", aliases=(Alias((MQTT_BROKER,), broker_host),))
    mqtt_port: int = setting("MQTT_PORT", 1883, Env.port, aliases=(Alias((MQTT_BROKER,), broker_port),))
    topic_prefix: str = setting("TOPIC_PREFIX", DEFAULT_PREFIX, Env.topic_prefix)
    mqtt_username: str | None = setting("MQTT_USERNAME", None, Env.optional)
    mqtt_password: str | None = setting("MQTT_PASSWORD", None, Env.secret, file_field="mqtt_password_file", repr=False)
    # The file the password was read from (MQTT_PASSWORD_FILE), if it was: `to_env` passes it on, not the password.
    mqtt_password_file: str | None = None
    mqtt_tls_ca: str | None = setting("MQTT_TLS_CA", None, Env.existing_file)
    mqtt_keepalive: int = setting("MQTT_KEEPALIVE", 5, Env.integer, minimum=1, maximum=3600)
    log_level: str = setting("LOG_LEVEL", "INFO", Env.upper)
    event_loop: str = setting("EVENT_LOOP", "auto", Env.choice, options=LOOP_CHOICES)
