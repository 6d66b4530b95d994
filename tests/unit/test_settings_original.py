"""The original system's variables read as aliases of ours: MQTT_BROKER (host or mqtt:// URL, with or without
port) for MQTT_HOST and MQTT_PORT, MASTER_HOST with GRPC_PORT for GRPC_ENDPOINT. Our own variables win."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from lab.paths import REPO_ROOT
from lab.swarm.stack_check import READERS
from services.envconfig import Alias, Env, EnvSettings, ServiceSettings, mqtt_broker, setting
from services.master.settings import MasterSettings
from services.worker.settings import WorkerSettings

SETTINGS = (ServiceSettings, MasterSettings, WorkerSettings)
BROKER_ERROR = "MQTT_BROKER must be host, host:port or mqtt://host[:port], got {!r}"


@pytest.mark.parametrize("cls", SETTINGS)
@pytest.mark.parametrize(
    ("env", "host", "port"),
    [
        ({"MQTT_BROKER": "mosquitto"}, "mosquitto", 1883),
        ({"MQTT_BROKER": "mosquitto:1884"}, "mosquitto", 1884),
        ({"MQTT_BROKER": "mqtt://mosquitto"}, "mosquitto", 1883),
        ({"MQTT_BROKER": " MQTT://10.0.0.7:1885 "}, "10.0.0.7", 1885),
        # Our own variable wins over the alias, each on its own.
        ({"MQTT_BROKER": "mqtt://mosquitto:1884", "MQTT_HOST": "broker"}, "broker", 1884),
        ({"MQTT_BROKER": "mqtt://mosquitto:1884", "MQTT_PORT": "1999"}, "mosquitto", 1999),
        ({"MQTT_BROKER": "mosquitto", "MQTT_PORT": "1999"}, "mosquitto", 1999),
        # Empty means unset, for the alias as for ours.
        ({"MQTT_BROKER": "", "MQTT_HOST": ""}, "127.0.0.1", 1883),
        ({"MQTT_BROKER": "mqtt://mosquitto:1884", "MQTT_HOST": " ", "MQTT_PORT": ""}, "mosquitto", 1884),
    ],
)
def test_mqtt_broker_stands_for_host_and_port_when_ours_are_unset(
    cls: type[ServiceSettings], env: dict[str, str], host: str, port: int
) -> None:
    s = cls.from_env(env)
    assert (s.mqtt_host, s.mqtt_port) == (host, port)
    assert (cls.read_one("mqtt_host", env), cls.read_one("mqtt_port", env)) == (host, port)


@pytest.mark.parametrize(
    "bad",
    ["http://x", "mqtt://:99999", "mqtt://x:0", "mqtt://x:70000", "mqtt://x/", "x:y", "u@x", "mqtts://x", "mqtt://"],
)
@pytest.mark.parametrize("ours", [{}, {"MQTT_HOST": "h", "MQTT_PORT": "1"}])
@pytest.mark.parametrize("cls", SETTINGS)
def test_a_bad_mqtt_broker_is_an_error_naming_it_even_when_ours_win(
    cls: type[ServiceSettings], bad: str, ours: dict[str, str]
) -> None:
    with pytest.raises(ValueError) as e:
        cls.from_env({"MQTT_BROKER": bad, **ours})
    assert str(e.value) == BROKER_ERROR.format(bad)


def test_mqtt_broker_reads_host_and_optional_port() -> None:
    assert mqtt_broker(Env({})) is None
    assert mqtt_broker(Env({"MQTT_BROKER": "mqtt://mosquitto:1884"})) == ("mosquitto", 1884)
    assert mqtt_broker(Env({"MQTT_BROKER": "mosquitto"})) == ("mosquitto", None)


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({"MASTER_HOST": "master"}, "master:50051"),
        ({"MASTER_HOST": "master", "GRPC_PORT": "6001"}, "master:6001"),
        ({"MASTER_HOST": "", "GRPC_PORT": "6001"}, "127.0.0.1:6001"),
        # GRPC_ENDPOINT, ours, wins.
        ({"MASTER_HOST": "master", "GRPC_PORT": "6001", "GRPC_ENDPOINT": "m2:7000"}, "m2:7000"),
    ],
)
def test_master_host_and_grpc_port_are_the_callback_when_grpc_endpoint_is_unset(
    env: dict[str, str], endpoint: str
) -> None:
    s = MasterSettings.from_env(env)
    assert s.advertised_grpc_endpoint == endpoint
    assert MasterSettings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MASTER_HOST": "http://master"}, "MASTER_HOST must be a host name or address, got 'http://master'"),
        ({"MASTER_HOST": "master:50051"}, "MASTER_HOST must be a host name or address, got 'master:50051'"),
        ({"MASTER_HOST": "master", "GRPC_PORT": "x"}, "GRPC_PORT must be a whole number, got 'x'"),
    ],
)
def test_a_bad_master_host_is_an_error_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as e:
        MasterSettings.from_env(env)
    assert str(e.value) == message


def test_the_original_environment_alone_configures_the_master_and_the_worker() -> None:
    original = {
        "MQTT_BROKER": "mqtt://mosquitto:1883",
        "MASTER_HOST": "master",
        "GRPC_PORT": "50051",
        "WEB_PORT": "8000",
        "GEMINI_API_KEY": "k",
    }
    master = MasterSettings.from_env(original)
    assert (master.mqtt_host, master.mqtt_port, master.web_port) == ("mosquitto", 1883, 8000)
    assert master.advertised_grpc_endpoint == "master:50051"
    worker = WorkerSettings.from_env(original)
    assert (worker.mqtt_host, worker.mqtt_port, worker.gemini_api_key) == ("mosquitto", 1883, "k")


def test_aliases_count_as_read_variables_and_to_env_renders_our_own() -> None:
    assert {"MQTT_BROKER"} <= ServiceSettings.env_names() <= WorkerSettings.env_names()
    assert {"MQTT_BROKER", "MASTER_HOST", "GRPC_PORT"} <= MasterSettings.env_names()
    assert "MASTER_HOST" not in WorkerSettings.env_names()  # the master tells each task where to call back
    assert "MQTT_BROKER" in READERS["swarm-ai-lab/worker-go"] and "MASTER_HOST" in READERS["swarm-ai-lab/master"]
    assert MasterSettings.env_name("mqtt_host") == "MQTT_HOST"
    assert MasterSettings.env_name("grpc_endpoint") == "GRPC_ENDPOINT"
    s = MasterSettings.from_env({"MQTT_BROKER": "mqtt://mosquitto:1884", "MASTER_HOST": "master"})
    env = s.to_env()
    assert "MQTT_BROKER" not in env and "MASTER_HOST" not in env
    assert (env["MQTT_HOST"], env["MQTT_PORT"], env["GRPC_ENDPOINT"]) == ("mosquitto", "1884", "master:50051")
    assert MasterSettings.from_env(env) == s


def test_an_alias_is_a_generic_setting_option() -> None:
    def derive(env: Env) -> str | None:
        return env.optional("OLD_NAME")

    @dataclasses.dataclass(frozen=True)
    class Demo(EnvSettings):
        value: int = setting("NEW_NAME", 1, Env.integer, aliases=(Alias(("OLD_NAME",), derive),))

    demo = Demo
    assert demo.env_names() == {"NEW_NAME", "OLD_NAME"}
    assert demo.from_env({"OLD_NAME": "5"}).value == 5
    assert demo.from_env({"OLD_NAME": "5", "NEW_NAME": "7"}).value == 7
    with pytest.raises(ValueError, match=r"^NEW_NAME must be a whole number, got 'x'$"):
        demo.from_env({"OLD_NAME": "x"})  # checked as the setting it stands for


@pytest.mark.parametrize("service", ["master", "worker"])
def test_a_service_given_a_bad_mqtt_broker_exits_2_with_one_line_naming_it(service: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={"PATH": "/usr/bin:/bin", "MQTT_BROKER": "http://x", "MQTT_PORT": "1"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, done
    assert lines == [f"{service}: bad setting: {BROKER_ERROR.format('http://x')}"]
