"""Tests of the local cluster's configuration: broker config, service environments, ports, CLI options."""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from lab.cli import build_parser
from lab.commands.up import port_advice
from lab.system import broker
from lab.system.config import ClusterConfig, resolve_port
from lab.system.credentials import USERS, Credentials, password_file, password_hash
from lab.system.local import LocalCluster
from lab.system.ports import PortInUseError, ephemeral_low, free_port, port_in_use
from lab.system.statedir import OWNER_FILE, make_temp_state_dir, sweep_orphans
from lab.system.supervision import RestartPolicy, describe_exit

BASE = {"PATH": "/usr/bin", "HOME": "/home/someone", "MQTT_PORT": "1", "WORKER_ID": "from-shell"}


def _config(**overrides: object) -> ClusterConfig:
    values: dict[str, object] = {"web_port": 8001, "grpc_port": 8002, "mqtt_port": 8003}
    values.update(overrides)
    return ClusterConfig(**values)  # type: ignore[arg-type]


def _directives(text: str) -> list[tuple[str, str]]:
    """(option, value) of each non-comment line, in order."""
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split()[0], line.partition(" ")[2]) for line in lines if line and not line.startswith("#")]


# -- broker config --------------------------------------------------------------------------------------


def test_committed_config_has_no_listener_or_authentication() -> None:
    options = {name for name, _ in _directives(broker.base_config())}
    assert not options & {"listener", "port", "bind_address", "allow_anonymous", "password_file", "user"}


def test_committed_config_keeps_bursts_and_bounds_packets() -> None:
    settings = dict(_directives(broker.base_config()))
    assert settings["max_queued_messages"] == "100000"  # the default 1000 drops QoS 1 bursts silently
    assert settings["per_listener_settings"] == "false"
    assert settings["persistence"] == "false"
    assert 0 < int(settings["max_packet_size"]) <= 1024 * 1024
    assert int(settings["max_inflight_messages"]) >= 20
    assert settings["log_timestamp"] == "true"
    assert "message_size_limit" not in settings  # deprecated in Mosquitto 2; max_packet_size replaces it


def test_effective_config_appends_loopback_listener_after_the_committed_file() -> None:
    text = broker.effective_config(18830, "127.0.0.1", user="alice")
    assert text.startswith(broker.base_config().rstrip("\n"))
    directives = _directives(text)
    names = [name for name, _ in directives]
    assert ("listener", "18830 127.0.0.1") in directives
    assert ("allow_anonymous", "true") in directives
    assert ("user", "alice") in directives
    # per_listener_settings must come before any listener to apply to it.
    assert names.index("per_listener_settings") < names.index("listener")
    assert names.count("listener") == 1


def test_effective_config_runs_mosquitto_as_the_current_user_by_default() -> None:
    # Dropping to another user would clear the parent-death signal that ends the broker with the lab.
    assert ("user", getpass.getuser()) in _directives(broker.effective_config(1883))


def test_write_config_puts_the_effective_config_in_the_directory(tmp_path: Path) -> None:
    path = broker.write_config(tmp_path, 18999)
    assert path.parent == tmp_path
    assert "listener 18999 127.0.0.1" in path.read_text()


def test_missing_mosquitto_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(broker, "_FALLBACK_BINARY", tmp_path / "nope")
    with pytest.raises(broker.MosquittoNotFoundError, match=re.escape("sudo apt-get install mosquitto")):
        broker.find_mosquitto()


def test_mosquitto_found_outside_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "mosquitto"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(broker, "_FALLBACK_BINARY", fake)
    assert broker.find_mosquitto() == fake


def test_effective_config_with_a_password_file_refuses_anonymous_clients() -> None:
    text = broker.effective_config(1883, password_file=Path("/s/pw"), acl_file=Path("/s/acl"))
    directives = _directives(text)
    assert ("allow_anonymous", "false") in directives
    assert ("allow_anonymous", "true") not in directives
    assert ("password_file", "/s/pw") in directives
    assert ("acl_file", "/s/acl") in directives


def test_effective_config_turns_persistence_on_after_the_committed_off() -> None:
    directives = _directives(broker.effective_config(1883, persistence_dir=Path("/s/data")))
    persistence = [value for name, value in directives if name == "persistence"]
    assert persistence == ["false", "true"]  # Mosquitto keeps the last one
    assert ("persistence_location", "/s/data/") in directives  # must end with a slash


TLS = broker.BrokerTls(Path("/s/ca.pem"), Path("/s/server.pem"), Path("/s/server.key"))
TLS_OPTIONS = {"cafile", "certfile", "keyfile", "tls_version"}


def test_effective_config_gives_the_listener_tls_files_only_when_asked(tmp_path: Path) -> None:
    directives = _directives(broker.effective_config(1883, tls=TLS))
    names = [name for name, _ in directives]
    assert ("cafile", "/s/ca.pem") in directives
    assert ("certfile", "/s/server.pem") in directives
    assert ("keyfile", "/s/server.key") in directives
    assert ("tls_version", "tlsv1.2") in directives  # the minimum in Mosquitto 2
    assert all(names.index("listener") < names.index(option) for option in TLS_OPTIONS)  # the listener's own
    assert not TLS_OPTIONS & {name for name, _ in _directives(broker.effective_config(1883))}
    written = broker.write_config(tmp_path, 1883, tls=TLS).read_text()
    assert ("keyfile", "/s/server.key") in _directives(written)


def test_acl_gives_each_user_only_its_topics() -> None:
    acl = broker.render_acl("lab1")
    assert "{prefix}" not in acl
    rules: dict[str, list[str]] = {}
    user = "(every user)"
    for name, value in _directives(acl):
        if name == "user":
            user = value
        else:
            rules.setdefault(user, []).append(f"{name} {value}")
    assert rules == {
        "(every user)": ["pattern read lab1/workers/%c/tasks"],
        "master": ["topic readwrite lab1/#", "topic read $SYS/broker/log/N", "topic read $SYS/broker/log/M/subscribe"],
        "worker": [
            "topic write lab1/workers/register",
            "topic write lab1/workers/status",
            "topic write lab1/logs",
            "topic read lab1/master/status",
        ],
        "observer": [
            "topic read lab1/workers/register",
            "topic read lab1/workers/status",
            "topic read lab1/logs",
            "topic read lab1/results",
            "topic read lab1/master/status",
        ],
    }


@pytest.mark.parametrize("prefix", ["a\ntopic readwrite #", "a%u", " a", "a/#", ""])
def test_acl_refuses_a_prefix_that_would_change_its_rules(prefix: str) -> None:
    with pytest.raises(ValueError):
        broker.render_acl(prefix)


def test_write_config_with_credentials_writes_private_password_file_and_acl(tmp_path: Path) -> None:
    credentials = Credentials()
    conf = broker.write_config(tmp_path, 18999, topic_prefix="lab1", credentials=credentials, persistence=True)
    settings = dict(_directives(conf.read_text()))
    password_path, acl_path = Path(settings["password_file"]), Path(settings["acl_file"])
    assert password_path.parent == acl_path.parent == tmp_path
    assert acl_path.read_text() == broker.render_acl("lab1")
    assert Path(settings["persistence_location"]).is_dir()
    for path in (conf, password_path, acl_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = [line.split(":", 1)[0] for line in password_path.read_text().splitlines()]
    assert users == ["master", "worker", "observer"]
    assert credentials.worker not in password_path.read_text()


# -- credentials ----------------------------------------------------------------------------------------


def test_credentials_are_random_and_distinct() -> None:
    first, second = Credentials(), Credentials()
    passwords = [c.password(u) for c in (first, second) for u in USERS]
    assert len(set(passwords)) == 6
    assert all(len(p) >= 32 for p in passwords)
    assert first.login("observer") == ("observer", first.observer)


def test_passwords_never_appear_in_a_repr() -> None:
    config = _config()
    text = repr(config) + repr(config.credentials)
    assert all(config.credentials.password(u) not in text for u in USERS)


def test_password_hash_is_what_mosquitto_passwd_writes() -> None:
    # From `mosquitto_passwd -b -c file alice secret` (Mosquitto 2.0.11): same salt, same hash.
    salt = base64.b64decode("rLtmh1G71weqZzHg")
    expected = (
        "$7$101$rLtmh1G71weqZzHg$"
        "XDGBEq3H40OPBtbha2u9tkM9MXGVl6ZwNGVM7Y1XElNiAJjAzM1rcby2lV6OrlRszEGKWi1k2kBEQ7ZzNvjXPQ=="
    )
    assert password_hash("secret", salt) == expected


def test_password_file_has_a_salted_hash_per_user() -> None:
    credentials = Credentials()
    lines = password_file(credentials).splitlines()
    assert len(lines) == 3
    salts = set()
    for user, line in zip(USERS, lines, strict=True):
        name, _, hashed = line.partition(":")
        _, kind, rounds, salt, digest = hashed.split("$")
        assert (name, kind, rounds) == (user, "7", "101")
        derived = hashlib.pbkdf2_hmac("sha512", credentials.password(user).encode(), base64.b64decode(salt), 101)
        assert base64.b64decode(digest) == derived
        salts.add(salt)
    assert len(salts) == 3


# -- service environments -------------------------------------------------------------------------------


def test_master_env_points_at_broker_and_binds_to_the_lab_host() -> None:
    env = _config(topic_prefix="lab1").master_env(BASE)
    assert env["MQTT_HOST"] == "127.0.0.1"
    assert env["MQTT_PORT"] == "8003"  # ours, not the shell's
    assert env["TOPIC_PREFIX"] == "lab1"
    assert env["WEB_HOST"] == "127.0.0.1"
    assert env["WEB_PORT"] == "8001"
    assert env["GRPC_HOST"] == "127.0.0.1"
    assert env["GRPC_PORT"] == "8002"
    assert env["GRPC_ENDPOINT"] == "127.0.0.1:8002"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == "/usr/bin"  # the rest of the environment is inherited


def test_worker_env_carries_its_id_and_the_work_settings() -> None:
    env = _config(work_seconds=0.2, model_mode="offline").worker_env("python-worker-abc123", BASE)
    assert env["WORKER_ID"] == "python-worker-abc123"
    assert env["WORK_SECONDS"] == "0.2"
    assert env["MODEL_MODE"] == "offline"
    assert env["MQTT_PORT"] == "8003"
    assert env["TOPIC_PREFIX"] == "upb"
    assert "GRPC_ENDPOINT" not in env  # the master's setting: each task tells the worker where to answer
    assert env["HOME"] == "/home/someone"


def test_master_and_workers_log_in_as_their_own_users() -> None:
    config = _config()
    master, worker = config.master_env(BASE), config.worker_env("w", BASE)
    assert (master["MQTT_USERNAME"], master["MQTT_PASSWORD"]) == ("master", config.credentials.master)
    assert (worker["MQTT_USERNAME"], worker["MQTT_PASSWORD"]) == ("worker", config.credentials.worker)
    assert "MQTT_USERNAME" not in config.broker_env(BASE)


def test_shell_credentials_are_replaced_or_dropped() -> None:
    shell = {**BASE, "MQTT_USERNAME": "me", "MQTT_PASSWORD": "mine", "MQTT_PASSWORD_FILE": "/my/secret"}
    with_auth = _config().worker_env("w", shell)
    assert with_auth["MQTT_USERNAME"] == "worker" and "MQTT_PASSWORD_FILE" not in with_auth
    anonymous = _config(auth=False).worker_env("w", shell)
    assert not {"MQTT_USERNAME", "MQTT_PASSWORD", "MQTT_PASSWORD_FILE"} & set(anonymous)


def test_services_verify_the_broker_with_the_ca_exactly_when_it_speaks_tls() -> None:
    shell = {**BASE, "MQTT_TLS_CA": "/my/ca.pem"}
    config = _config(broker_tls=TLS)
    assert config.master_env(shell)["MQTT_TLS_CA"] == config.worker_env("w", shell)["MQTT_TLS_CA"] == "/s/ca.pem"
    assert "MQTT_TLS_CA" not in config.broker_env(BASE)
    assert "MQTT_TLS_CA" not in _config().worker_env("w", shell)  # a plain broker: the shell's CA would fail


def test_relative_tls_paths_become_absolute() -> None:
    relative = broker.BrokerTls(Path("ca.pem"), Path("server.pem"), Path("server.key"))
    config = ClusterConfig.resolve(web_port=0, grpc_port=0, mqtt_port=0, broker_tls=relative)
    assert config.broker_tls == broker.BrokerTls(
        *(Path.cwd() / name for name in ("ca.pem", "server.pem", "server.key"))
    )


def test_master_gets_the_journal_path() -> None:
    env = _config().master_env(BASE, journal_path=Path("/state/journal.sqlite3"))
    assert env["JOURNAL_PATH"] == "/state/journal.sqlite3"


def test_whole_seconds_are_written_without_a_fraction() -> None:
    assert _config(work_seconds=10.0).worker_env("w", {})["WORK_SECONDS"] == "10"


def test_extra_env_reaches_every_process_and_wins() -> None:
    config = _config(extra_env={"OFFLINE_LATENCY_MS": "50", "LOG_LEVEL": "DEBUG", "MODEL_MODE": "gemini"})
    master, worker, mosquitto = config.master_env(BASE), config.worker_env("w", BASE), config.broker_env(BASE)
    for env in (master, worker, mosquitto):
        assert env["OFFLINE_LATENCY_MS"] == "50"
        assert env["LOG_LEVEL"] == "DEBUG"
    assert worker["MODEL_MODE"] == "gemini"


def test_envs_do_not_change_the_base() -> None:
    base = dict(BASE)
    _config().worker_env("w", base)
    assert base == BASE


@pytest.mark.parametrize(
    "overrides",
    [{"model_mode": "magic"}, {"topic_prefix": "a/#"}, {"work_seconds": -1.0}, {"web_port": 0}],
)
def test_invalid_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _config(**overrides)


# -- state directory ------------------------------------------------------------------------------------


def test_state_dir_is_private_and_names_its_lab(tmp_path: Path) -> None:
    path = make_temp_state_dir(tmp_path)
    assert path.parent == tmp_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert (path / OWNER_FILE).read_text() == str(os.getpid())


def test_directories_of_dead_labs_are_swept_and_others_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan, ours, unmarked = (tmp_path / f"lab-cluster-{n}" for n in ("orphan", "ours", "unmarked"))
    for path in (orphan, ours, unmarked, tmp_path / "unrelated"):
        path.mkdir()
    (orphan / OWNER_FILE).write_text(str(dead.pid))
    (ours / OWNER_FILE).write_text(str(os.getpid()))
    assert sweep_orphans(tmp_path) == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab-cluster-ours", "lab-cluster-unmarked", "unrelated"]


# -- restart policy -------------------------------------------------------------------------------------


def test_rapid_failures_back_off_then_give_up() -> None:
    policy = RestartPolicy(base_delay=0.5, max_delay=3.0, window=10.0, max_rapid=5)
    rapid, delays = 0, []
    for _ in range(5):
        rapid, delay = policy.after_exit(rapid, ran_for=1.0, injected=False)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 3.0, None]
    assert rapid == 5


def test_a_long_run_resets_the_rapid_failures() -> None:
    policy = RestartPolicy(window=10.0, max_rapid=2)
    assert policy.after_exit(1, ran_for=10.0, injected=False) == (0, policy.base_delay)
    assert policy.after_exit(1, ran_for=9.0, injected=False) == (2, None)


def test_a_kill_the_lab_injected_is_never_a_crash_loop() -> None:
    policy = RestartPolicy(max_rapid=1)
    assert policy.after_exit(7, ran_for=0.1, injected=True) == (0, policy.base_delay)


@pytest.mark.parametrize("values", [{"base_delay": -1.0}, {"max_rapid": 0}, {"base_delay": 2.0, "max_delay": 1.0}])
def test_invalid_restart_policy_is_refused(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**values)  # type: ignore[arg-type]


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(0) == "exited with code 0"


# -- ports ----------------------------------------------------------------------------------------------


def test_zero_ports_are_replaced_by_distinct_free_ones() -> None:
    config = ClusterConfig.resolve(web_port=0, grpc_port=0, mqtt_port=0)
    ports = [config.web_port, config.grpc_port, config.mqtt_port]
    assert all(1024 <= p <= 65535 for p in ports)
    assert all(not port_in_use("127.0.0.1", p) for p in ports)


def test_given_ports_are_kept() -> None:
    assert resolve_port(8888, "127.0.0.1") == 8888
    with pytest.raises(ValueError):
        resolve_port(70000, "127.0.0.1")


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", free_port())


def test_free_ports_are_distinct_and_outside_the_outgoing_connections_range() -> None:
    """An outgoing connection's local port comes from the ephemeral range: a port picked there could be taken
    before the server binds it."""
    picked = [free_port() for _ in range(50)]
    assert len(set(picked)) == 50
    assert all(port < ephemeral_low() for port in picked)
    for port in picked[:5]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    ranges = tmp_path / "range"
    ranges.write_text("40000\t60999\n")
    assert ephemeral_low(ranges) == 40000
    assert ephemeral_low(tmp_path / "missing") == 32768


def test_cluster_knows_its_addresses_before_starting() -> None:
    cluster = LocalCluster(web_port=0, grpc_port=0, mqtt_port=0)
    assert cluster.web_url == f"http://127.0.0.1:{cluster.config.web_port}"
    assert cluster.grpc_endpoint == f"127.0.0.1:{cluster.config.grpc_port}"
    assert cluster.mqtt_port == cluster.config.mqtt_port
    assert cluster.processes == {}
    assert cluster.credentials is cluster.config.credentials and cluster.config.auth
    assert cluster.state_dir is None and cluster.restarts == []
    cluster.stop()  # harmless before start, and again
    cluster.stop()


def test_start_refuses_a_taken_port_before_starting_anything() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        taken = server.getsockname()[1]
        cluster = LocalCluster(web_port=0, grpc_port=0, mqtt_port=taken)
        with pytest.raises(PortInUseError) as info:
            cluster.start()
    assert (info.value.role, info.value.port) == ("MQTT", taken)
    assert cluster.processes == {}


# -- the `lab up` command line ----------------------------------------------------------------------------


def test_lab_up_defaults() -> None:
    args = build_parser().parse_args(["up"])
    assert (args.workers, args.work_seconds, args.model_mode) == ((("python", 2),), 10.0, "auto")
    assert (args.web_port, args.grpc_port, args.mqtt_port) == (8888, 50051, 1883)


def test_lab_up_restarts_by_default_and_no_restart_turns_it_off() -> None:
    assert build_parser().parse_args(["up"]).restart is True
    assert build_parser().parse_args(["up", "--no-restart"]).restart is False


def test_lab_up_options() -> None:
    argv = ["up", "--workers", "3", "--work-seconds", "0.5", "--web-port", "1", "--grpc-port", "2"]
    args = build_parser().parse_args([*argv, "--mqtt-port", "3", "--model-mode", "offline"])
    assert (args.workers, args.work_seconds, args.model_mode) == ((("python", 3),), 0.5, "offline")
    assert (args.web_port, args.grpc_port, args.mqtt_port) == (1, 2, 3)


def test_taken_mqtt_port_advice_names_the_flag_and_the_system_broker() -> None:
    advice = port_advice(PortInUseError("MQTT", "127.0.0.1", 1883))
    assert "port 1883 (MQTT) on 127.0.0.1 is already in use" in advice
    assert "--mqtt-port" in advice
    assert "sudo systemctl stop mosquitto" in advice


def test_system_broker_is_only_suspected_on_the_default_port() -> None:
    assert "systemctl" not in port_advice(PortInUseError("MQTT", "127.0.0.1", 18830))


def test_taken_web_port_advice_names_its_flag() -> None:
    advice = port_advice(PortInUseError("web", "127.0.0.1", 8888))
    assert "--web-port" in advice
    assert "systemctl" not in advice
