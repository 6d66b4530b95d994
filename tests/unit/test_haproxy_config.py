"""The HAProxy config the lab renders for standby masters (lab/system/haproxy.py), as text: no process runs here
(tests/integration/test_haproxy.py has haproxy check and run it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.system import haproxy
from lab.system.haproxy import Backend, Haproxy, HaproxyNotFoundError, haproxy_config

MASTERS = [
    Backend("m1", "127.0.0.1", 18081, 18091),
    Backend("m2", "127.0.0.1", 18082, 18092),
    Backend("m3", "127.0.0.2", 18083, 18093),
]


def section(config: str, header: str) -> list[str]:
    """The stripped lines of the section that starts with `header`, up to the next blank line."""
    lines = config.splitlines()
    start = lines.index(header)
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return [line.strip() for line in lines[start + 1 : end]]


def test_every_master_is_a_web_server_checked_with_get_leader() -> None:
    web = section(haproxy_config(MASTERS, 8888, 50051), "backend masters_web")
    assert "mode http" in web and "http-check expect status 200" in web
    assert any(line.startswith("http-check send meth GET uri /leader ") for line in web)
    servers = [line for line in web if line.startswith("server ")]
    assert servers == [f"server {m.name} {m.host}:{m.web_port} check" for m in MASTERS]


def test_every_masters_grpc_port_is_checked_on_its_web_port() -> None:
    grpc = section(haproxy_config(MASTERS, 8888, 50051), "backend masters_grpc")
    assert "mode tcp" in grpc and "http-check expect status 200" in grpc
    assert any(line.startswith("http-check send meth GET uri /leader ") for line in grpc)
    servers = [line for line in grpc if line.startswith("server ")]
    assert servers == [f"server {m.name} {m.host}:{m.grpc_port} check port {m.web_port}" for m in MASTERS]


def test_frontends_bind_the_given_ports_and_the_web_one_keeps_websockets_and_the_clients_address() -> None:
    config = haproxy_config(MASTERS, 8888, 50051, "0.0.0.0")
    web, grpc = section(config, "frontend web"), section(config, "frontend grpc")
    assert "bind 0.0.0.0:8888" in web and "mode http" in web and "option forwardfor" in web
    assert "bind 0.0.0.0:50051" in grpc and "mode tcp" in grpc
    defaults = section(config, "defaults")
    assert "timeout tunnel 1h" in defaults and "timeout check 1000ms" in defaults
    assert not any("stick" in line or "cookie" in line for line in config.splitlines())


def test_check_timings_follow_the_interval_and_connections_to_a_master_marked_down_are_cut() -> None:
    (line,) = [x for x in section(haproxy_config(MASTERS, 1, 2, check_interval_ms=400), "defaults") if "inter" in x]
    assert "inter 400ms" in line and "fastinter 200ms" in line and "fall 2 rise 1" in line
    assert "on-marked-down shutdown-sessions" in line


def test_runs_in_the_foreground_without_syslog_or_stats_socket() -> None:
    config = haproxy_config(MASTERS, 8888, 50051)
    assert "daemon" not in config and "stats socket" not in config
    assert not any(line.strip().startswith("log ") for line in config.splitlines())
    assert "maxconn 4096" in section(config, "global")


@pytest.mark.parametrize(
    "masters",
    [
        [],
        [MASTERS[0], MASTERS[0]],
        [Backend("m 1", "127.0.0.1", 1, 2)],
        [Backend("m1", "127.0.0.1\n    server evil", 1, 2)],
    ],
)
def test_masters_that_cannot_make_a_config_are_refused(masters: list[Backend]) -> None:
    with pytest.raises(ValueError):
        haproxy_config(masters, 8888, 50051)


def test_a_missing_haproxy_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(haproxy, "_FALLBACK_BINARY", tmp_path / "no-haproxy")
    with pytest.raises(HaproxyNotFoundError, match=r"haproxy not found.*apt-get install haproxy"):
        haproxy.find_haproxy()
    proxy = Haproxy(MASTERS, tmp_path, web_port=8888, grpc_port=50051)
    with pytest.raises(HaproxyNotFoundError):
        proxy.start()  # before writing anything or starting a process
    assert proxy.process is None and not (tmp_path / "haproxy.cfg").exists()
    assert (proxy.web_url, proxy.grpc_endpoint) == ("http://127.0.0.1:8888", "127.0.0.1:50051")
