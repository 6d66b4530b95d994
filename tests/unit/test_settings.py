"""Tests of the master's and the worker's settings: defaults, parsing, and bad values named clearly."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Any

import pytest

from services.envconfig import Env, EnvSettings, ServiceSettings, env_bool
from services.master.settings import MasterSettings
from services.worker.settings import DEFAULT_GEMINI_MODEL, WorkerSettings, new_worker_id

# -- master ------------------------------------------------------------------------------------


def test_master_defaults_match_the_documented_ones() -> None:
    s = MasterSettings.from_env({})
    assert s == MasterSettings()
    assert (s.mqtt_host, s.mqtt_port, s.topic_prefix) == ("127.0.0.1", 1883, "upb")
    assert (s.web_host, s.web_port, s.grpc_host, s.grpc_port) == ("0.0.0.0", 8888, "0.0.0.0", 50051)
    assert (s.max_query_chars, s.max_attempts, s.allow_baseline_workers, s.log_level) == (8000, 3, False, "INFO")


def test_master_grpc_endpoint_defaults_to_loopback_and_the_grpc_port() -> None:
    assert MasterSettings.from_env({}).advertised_grpc_endpoint == "127.0.0.1:50051"
    assert MasterSettings.from_env({"GRPC_PORT": "6001"}).advertised_grpc_endpoint == "127.0.0.1:6001"


def test_master_grpc_endpoint_given_explicitly_wins_over_the_port() -> None:
    s = MasterSettings.from_env({"GRPC_PORT": "6001", "GRPC_ENDPOINT": "master:50051"})
    assert s.advertised_grpc_endpoint == "master:50051"
    assert s.grpc_port == 6001


def test_master_reads_every_variable_from_the_environment() -> None:
    s = MasterSettings.from_env(
        {
            "MQTT_HOST": "broker",
            "MQTT_PORT": "2883",
            "TOPIC_PREFIX": "lab",
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": "9000",
            "GRPC_HOST": "127.0.0.2",
            "GRPC_PORT": "50052",
            "GRPC_ENDPOINT": "m:1",
            "MAX_QUERY_CHARS": "100",
            "MAX_ATTEMPTS": "5",
            "ALLOW_BASELINE_WORKERS": "true",
            "LOG_LEVEL": "debug",
        }
    )
    assert s == MasterSettings(
        mqtt_host="broker",
        mqtt_port=2883,
        topic_prefix="lab",
        web_host="127.0.0.1",
        web_port=9000,
        grpc_host="127.0.0.2",
        grpc_port=50052,
        grpc_endpoint="m:1",
        max_query_chars=100,
        max_attempts=5,
        allow_baseline_workers=True,
        log_level="DEBUG",
    )


def test_master_empty_variables_fall_back_to_defaults() -> None:
    blank = {
        name: ""
        for name in (
            "MQTT_HOST",
            "MQTT_PORT",
            "TOPIC_PREFIX",
            "WEB_PORT",
            "GRPC_PORT",
            "MAX_ATTEMPTS",
            "ALLOW_BASELINE_WORKERS",
            "LOG_LEVEL",
        )
    }
    assert MasterSettings.from_env(blank) == MasterSettings()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"MQTT_PORT": "abc"}, "MQTT_PORT", id="mqtt-port"),
        pytest.param({"WEB_PORT": "8888.5"}, "WEB_PORT", id="web-port"),
        pytest.param({"GRPC_PORT": "fifty"}, "GRPC_PORT", id="grpc-port"),
        pytest.param({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS", id="max-attempts-zero"),
        pytest.param({"MAX_QUERY_CHARS": "-5"}, "MAX_QUERY_CHARS", id="max-query-chars-negative"),
        pytest.param({"ALLOW_BASELINE_WORKERS": "maybe"}, "ALLOW_BASELINE_WORKERS", id="allow-baseline"),
    ],
)
def test_master_bad_value_is_a_value_error_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        MasterSettings.from_env(env)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "On", " true "])
def test_true_spellings_read_as_true(raw: str) -> None:
    assert env_bool(raw, default=False) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "OFF"])
def test_false_spellings_read_as_false(raw: str) -> None:
    assert env_bool(raw, default=True) is False


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_unset_boolean_reads_as_its_default(raw: str | None) -> None:
    assert env_bool(raw, default=True) is True
    assert env_bool(raw, default=False) is False


def test_unreadable_boolean_is_a_value_error_quoting_the_value() -> None:
    with pytest.raises(ValueError, match="'maybe'"):
        env_bool("maybe", default=False)


# -- worker ------------------------------------------------------------------------------------


def test_worker_defaults_match_the_documented_ones() -> None:
    s = WorkerSettings.from_env({})
    assert re.fullmatch(r"python-worker-[0-9a-f]{6}", s.worker_id)
    assert (s.mqtt_host, s.mqtt_port, s.topic_prefix) == ("127.0.0.1", 1883, "upb")
    assert (s.work_seconds, s.model_mode, s.gemini_model) == (10.0, "auto", DEFAULT_GEMINI_MODEL)
    assert (s.gemini_api_key, s.gemini_api_key_file, s.gemini_base_url) == (None, None, None)
    assert (s.gemini_timeout_seconds, s.offline_latency_ms, s.offline_latency_sd_ms) == (30.0, 0.0, 0.0)
    assert s.log_level == "INFO"
    assert s.result_stream is True
    assert WorkerSettings.from_env({"RESULT_STREAM": "false"}).result_stream is False


def test_generated_worker_id_has_the_baseline_form() -> None:
    assert re.fullmatch(r"python-worker-[0-9a-f]{6}", new_worker_id())


def test_worker_reads_every_variable_from_the_environment() -> None:
    s = WorkerSettings.from_env(
        {
            "WORKER_ID": "python-worker-lab01",
            "MQTT_HOST": "broker",
            "MQTT_PORT": "2883",
            "TOPIC_PREFIX": "lab",
            "WORK_SECONDS": "0.25",
            "MODEL_MODE": "Offline",
            "GEMINI_API_KEY": " key-1 ",
            "GEMINI_API_KEY_FILE": "/run/secrets/gemini",
            "GEMINI_MODEL": "gemini-pro",
            "GEMINI_BASE_URL": "http://127.0.0.1:9",
            "GEMINI_TIMEOUT_SECONDS": "5",
            "OFFLINE_LATENCY_MS": "120",
            "OFFLINE_LATENCY_SD_MS": "30",
            "GRPC_RETRIES": "2",
            "LOG_LEVEL": "warning",
        }
    )
    assert s == WorkerSettings(
        worker_id="python-worker-lab01",
        mqtt_host="broker",
        mqtt_port=2883,
        topic_prefix="lab",
        work_seconds=0.25,
        model_mode="offline",
        gemini_api_key="key-1",
        gemini_api_key_file="/run/secrets/gemini",
        gemini_model="gemini-pro",
        gemini_base_url="http://127.0.0.1:9",
        gemini_timeout_seconds=5.0,
        offline_latency_ms=120.0,
        offline_latency_sd_ms=30.0,
        grpc_retries=2,
        log_level="WARNING",
    )


def test_worker_blank_api_key_means_no_key() -> None:
    assert WorkerSettings.from_env({"GEMINI_API_KEY": "  "}).gemini_api_key is None


def test_worker_api_key_is_not_in_the_settings_repr() -> None:
    s = WorkerSettings.from_env({"GEMINI_API_KEY": "very-secret-key"})
    assert s.gemini_api_key == "very-secret-key"
    assert "very-secret-key" not in repr(s)


def test_zero_work_seconds_is_allowed() -> None:
    assert WorkerSettings.from_env({"WORK_SECONDS": "0"}).work_seconds == 0.0


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"MQTT_PORT": "abc"}, "MQTT_PORT", id="mqtt-port"),
        pytest.param({"MQTT_PORT": "inf"}, "MQTT_PORT", id="mqtt-port-infinite"),
        pytest.param({"WORK_SECONDS": "-1"}, "WORK_SECONDS", id="work-seconds-negative"),
        pytest.param({"WORK_SECONDS": "nan"}, "WORK_SECONDS", id="work-seconds-nan"),
        pytest.param({"WORK_SECONDS": "ten"}, "WORK_SECONDS", id="work-seconds-text"),
        pytest.param({"MODEL_MODE": "wrong"}, "MODEL_MODE", id="model-mode"),
        pytest.param({"GEMINI_TIMEOUT_SECONDS": "-3"}, "GEMINI_TIMEOUT_SECONDS", id="timeout-negative"),
        pytest.param({"OFFLINE_LATENCY_MS": "fast"}, "OFFLINE_LATENCY_MS", id="latency"),
        pytest.param({"GRPC_RETRIES": "-1"}, "GRPC_RETRIES", id="grpc-retries"),
    ],
)
def test_worker_bad_value_is_a_value_error_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        WorkerSettings.from_env(env)


def test_model_mode_error_lists_the_allowed_modes() -> None:
    with pytest.raises(ValueError, match="auto, gemini, offline"):
        WorkerSettings.from_env({"MODEL_MODE": "wrong"})


# -- one name per setting: env_name, to_env and env_of ---------------------------------------------------------

SETTINGS: list[type[EnvSettings]] = [MasterSettings, WorkerSettings]


def random_settings(cls: type[EnvSettings], rng: random.Random, files: list[str]) -> dict[str, Any]:
    """Random valid values for every setting of `cls`, chosen by how the setting is read."""
    values: dict[str, Any] = {}

    def word() -> str:
        return rng.choice("abcxyz") + str(rng.randrange(10**6))

    for name, variable in cls.variables().items():
        read, options = variable.read, variable.options
        if read is Env.text:
            value: Any = f"/var/{word()}" if name.endswith(("_path", "_file")) else word()
        elif read is Env.port:
            value = rng.randrange(1, 65536)
        elif read is Env.integer:
            value = rng.randrange(options.get("minimum", 0), (options.get("maximum") or 10**6) + 1)
        elif read is Env.number:
            value = options.get("minimum", 0.0) + rng.choice([rng.random() * 10 ** rng.randrange(-3, 6), 7.0, 0.1])
        elif read is Env.boolean:
            value = rng.random() < 0.5
        elif read is Env.choice:
            value = rng.choice(options["options"])
        elif read is Env.topic_prefix:
            value = rng.choice(["lab", "a/b", f"run-{word()}"])
        elif read is Env.matching:
            value = f"python-worker-{word()}" if name == "worker_id" else f"{word()}.local:{rng.randrange(1, 65536)}"
        elif read is Env.upper:
            value = rng.choice(["DEBUG", "WARNING", "ERROR"])
        elif read is Env.words:
            value = tuple(f"http://{word()}" for _ in range(rng.randrange(4)))
        elif read is Env.optional:
            value = rng.choice([None, word()])
        elif read is Env.existing_file:
            value = rng.choice([None, *files])
        elif read is Env.secret:
            value = rng.choice([None, word(), "in a file"])
            if value == "in a file":  # the secret's file, whose content the value is
                values[variable.file_field or ""] = files[0]
                value = Path(files[0]).read_text().strip()
        else:
            raise AssertionError(f"no random values for {read}: add them")
        values[name] = value
    if cls is MasterSettings:  # the master's settings that hold together
        if bool(values["grpc_tls_cert"]) != bool(values["grpc_tls_key"]):
            values["grpc_tls_key"] = values["grpc_tls_cert"] = files[0]
        values["etcd_endpoints"] = tuple(f"{word()}:{rng.randrange(1, 65536)}" for _ in range(rng.randrange(4)))
        if values["journal_backend"] == "etcd" and not values["etcd_endpoints"]:
            values["etcd_endpoints"] = ("etcd:2379",)
        values["etcd_prefix"] = f"/{word()}"
        values["mqtt_brokers"] = tuple(f"{word()}:{rng.randrange(1, 65536)}" for _ in range(rng.randrange(4)))
        if bool(values["etcd_cert"]) != bool(values["etcd_key"]):
            values["etcd_key"] = values["etcd_cert"] = files[0]
        if values["etcd_cert"] and not values["etcd_ca"]:
            values["etcd_ca"] = files[1]
    return values


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    paths = [tmp_path / name for name in ("secret", "ca.pem")]
    for path in paths:
        path.write_text("s3cret-from-a-file\n")
    return [str(p) for p in paths]


@pytest.mark.parametrize("cls", SETTINGS)
@pytest.mark.parametrize("seed", range(40))
def test_settings_rendered_as_an_environment_read_back_equal(
    cls: type[EnvSettings], seed: int, files: list[str]
) -> None:
    settings = cls(**random_settings(cls, random.Random(seed), files))
    env = settings.to_env()
    assert cls.from_env(env) == settings
    assert all(isinstance(v, str) for v in env.values())
    assert set(env) <= cls.env_names()


@pytest.mark.parametrize("cls", SETTINGS)
def test_defaults_render_and_read_back_equal(cls: type[EnvSettings]) -> None:
    settings = cls.from_env({})
    assert cls.from_env(settings.to_env()) == settings


def test_values_render_as_the_variables_read_them() -> None:
    s = MasterSettings(
        allow_baseline_workers=True, cors_origins=("http://a", "http://b"), lease_seconds=0.25, max_attempts=4
    )
    env = s.to_env()
    assert env["ALLOW_BASELINE_WORKERS"] == "true" and env["CORS_ORIGINS"] == "http://a,http://b"
    assert (env["LEASE_SECONDS"], env["ANSWER_RETENTION_SECONDS"], env["MAX_ATTEMPTS"]) == ("0.25", "3600", "4")
    assert "MQTT_USERNAME" not in env and "GRPC_TLS_CERT" not in env  # None is left out


def test_a_secret_renders_as_its_file_when_it_was_read_from_one(files: list[str]) -> None:
    from_file = WorkerSettings.from_env({"MQTT_PASSWORD_FILE": files[0], "WORKER_ID": "python-worker-1"})
    assert (from_file.mqtt_password, from_file.mqtt_password_file) == ("s3cret-from-a-file", files[0])
    assert from_file.to_env()["MQTT_PASSWORD_FILE"] == files[0]
    assert "MQTT_PASSWORD" not in from_file.to_env()
    direct = WorkerSettings.from_env({"MQTT_PASSWORD": "pw", "MQTT_PASSWORD_FILE": files[0]})
    assert (direct.mqtt_password, direct.mqtt_password_file) == ("pw", None)  # the direct value wins
    assert direct.to_env()["MQTT_PASSWORD"] == "pw" and "MQTT_PASSWORD_FILE" not in direct.to_env()
    assert "pw" not in repr(direct)


def test_a_field_names_its_variable() -> None:
    assert MasterSettings.env_name("max_in_flight_per_session") == "MAX_IN_FLIGHT_PER_SESSION"
    assert WorkerSettings.env_name("work_seconds") == "WORK_SECONDS"
    assert MasterSettings.env_name("mqtt_host") == WorkerSettings.env_name("mqtt_host") == "MQTT_HOST"
    with pytest.raises(KeyError, match="no setting 'advertised_grpc_endpoint'"):
        MasterSettings.env_name("advertised_grpc_endpoint")


def test_every_variable_is_named_once_and_the_services_share_the_brokers() -> None:
    for cls in SETTINGS:
        names = [v.name for v in cls.variables().values()]
        assert len(names) == len(set(names)), names
    shared = set(ServiceSettings.variables())
    assert shared <= set(MasterSettings.variables()) & set(WorkerSettings.variables())
    assert set(MasterSettings.variables()) & set(WorkerSettings.variables()) == shared
    assert "MQTT_PASSWORD_FILE" in ServiceSettings.env_names()


def test_env_of_renders_only_the_settings_given() -> None:
    assert MasterSettings.env_of(max_in_flight_per_session=1000, allow_baseline_workers=True) == {
        "MAX_IN_FLIGHT_PER_SESSION": "1000",
        "ALLOW_BASELINE_WORKERS": "true",
    }
    assert WorkerSettings.env_of(work_seconds=0.2, mqtt_username=None) == {"WORK_SECONDS": "0.2"}
    with pytest.raises(TypeError, match="no setting work_second"):
        WorkerSettings.env_of(work_second=1)


def test_read_one_reads_a_single_setting_and_names_a_bad_one() -> None:
    assert WorkerSettings.read_one("work_seconds", {"WORK_SECONDS": "2", "MQTT_PORT": "bad"}) == 2.0
    with pytest.raises(ValueError, match="WORK_SECONDS"):
        WorkerSettings.read_one("work_seconds", {"WORK_SECONDS": "-2"})


def test_settings_classes_keep_their_defaults_as_class_attributes() -> None:
    # The lab takes its defaults from here (ClusterConfig).
    assert (MasterSettings.web_port, MasterSettings.grpc_port, MasterSettings.mqtt_port) == (8888, 50051, 1883)
    assert (WorkerSettings.work_seconds, WorkerSettings.model_mode) == (10.0, "auto")
    assert {f.name for f in dataclasses.fields(MasterSettings)} >= {"mqtt_host", "event_loop", "journal_path"}


def test_grpc_tls_cert_and_key_go_together() -> None:
    with pytest.raises(ValueError, match="GRPC_TLS_CERT and GRPC_TLS_KEY go together"):
        MasterSettings(grpc_tls_cert="/c")
