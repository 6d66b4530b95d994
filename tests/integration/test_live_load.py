"""`lab load` while it runs: a live table redrawn on a real pseudo-terminal, plain lines into a pipe; and
attaching to a running system by its URL alone, with errors that name the flag to fix."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from lab.loadgen import arrivals
from lab.system.ports import free_port
from lab.system.presets import sessions_unlimited
from lab.system.target import AttachError, attach, grpc_candidates
from tests.conftest import ClusterFactory, require_mosquitto

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RATE, DURATION = 3, 8
PLANNED = len(arrivals.constant(RATE, DURATION))  # --arrival constant: exactly this many questions
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78])")
SMALL_RUN = [
    "--workers",
    "2",
    "--work-seconds",
    "0.3",
    "--model-latency-ms",
    "50",
    "--arrival",
    "constant",
    "--rate",
    str(RATE),
    "--duration",
    str(DURATION),
    "--users",
    "3",
    "--no-charts",
]


def lab_load(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`lab load ARGS`; `token` as OPERATOR_TOKEN in its environment (none from the caller's)."""
    env = {k: v for k, v in os.environ.items() if k != "OPERATOR_TOKEN"}
    if token is not None:
        env["OPERATOR_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", "load", *args], capture_output=True, text=True, timeout=300, cwd=REPO, env=env
    )


def in_terminal(args: list[str], timeout_s: float = 240.0) -> tuple[int, str]:
    """Run `args` with stdin, stdout and stderr on a new pseudo-terminal (160 x 50); its exit code and all
    it wrote."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(args, stdin=terminal, stdout=terminal, stderr=terminal, cwd=REPO, env=env)
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_on_a_terminal_lab_load_redraws_a_table_whose_numbers_grow(tmp_path: Path) -> None:
    require_mosquitto()
    args = [sys.executable, "-m", "lab.cli", "load", *SMALL_RUN, "--label", "live", "--runs-dir", str(tmp_path)]
    code, raw = in_terminal(args)
    assert code == 0, raw[-3000:]
    assert "\x1b[" in raw  # drawn as a terminal is: colours and cursor moves
    text = ANSI.sub("", raw)
    for header in ("sent", "answered", "failed", "in flight", "queue", "answers/s", "last 10 s", "overall", "p95"):
        assert header in text, header
    # One row of numbers per frame: sent/planned, answered, failed, in flight, queue.
    rows = [
        tuple(int(v) if v != "-" else -1 for v in row)
        for row in re.findall(rf"(\d+)/{PLANNED}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+|-)", text)
    ]
    assert len(rows) >= 3, text[-3000:]
    sent, answered = [r[0] for r in rows], [r[1] for r in rows]
    assert sent == sorted(sent) and answered == sorted(answered)
    assert len(set(sent)) >= 2 and len(set(answered)) >= 2  # the numbers changed while it ran
    assert rows[-1][:4] == (PLANNED, PLANNED, 0, 0)  # the last frame stays: everything answered
    assert all(s == a + f + i for s, a, f, i, _ in rows)
    assert len(set(re.findall(r"open loop · (\d+) s of \d+ s", text))) >= 3  # the clock in the title moved
    assert "KPIs of run" in text  # the final report, as before


def test_into_a_pipe_lab_load_prints_a_plain_line_every_few_seconds(tmp_path: Path) -> None:
    require_mosquitto()
    done = lab_load(*SMALL_RUN, "--label", "plain", "--runs-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("[open loop · ")]
    assert len(lines) >= 2, done.stderr  # one every 5 s of a ~9 s run, and the last numbers
    assert "\x1b[" not in done.stderr + done.stdout
    assert f"sent {PLANNED}/{PLANNED} · answered {PLANNED} · failed 0 · in flight 0 · queue " in lines[-1]
    assert re.search(r"latency p50 \d+\.\d+ s p95 \d+\.\d+ s p99 \d+\.\d+ s$", lines[-1])
    assert "KPIs of run" in done.stdout
    quiet = lab_load(*SMALL_RUN, "--duration", "1", "--no-progress", "--runs-dir", str(tmp_path))
    assert quiet.returncode == 0, quiet.stderr
    assert "[open loop" not in quiet.stderr


def test_grpc_is_looked_for_on_the_urls_host_at_the_advertised_port_then_as_advertised() -> None:
    assert grpc_candidates("node.example", "master:50061") == ["node.example:50061", "master:50061"]
    assert grpc_candidates("127.0.0.1", "127.0.0.1:41234") == ["127.0.0.1:41234"]
    assert grpc_candidates("node.example", "") == ["node.example:50051"]  # a master that does not say
    assert grpc_candidates("::1", "[::1]:5") == ["[::1]:5"]


def test_lab_load_attaches_by_url_alone_and_finds_the_grpc_endpoint(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.2, extra_env=sessions_unlimited())
    target = attach(cluster.web_url, token=cluster.operator_token)  # what a notebook's `url` parameter does
    assert target.grpc_endpoint == cluster.grpc_endpoint
    done = lab_load(
        "--url", cluster.web_url, "--token", cluster.operator_token, "--rate", "3", "--duration", "2",
        "--users", "2", "--no-charts", "--runs-dir", str(tmp_path), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"gRPC {cluster.grpc_endpoint} (2 workers online)" in done.stdout


def test_what_cannot_be_reached_is_named_with_the_flag_that_fixes_it(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.2)
    nothing = free_port()
    saved = tmp_path / "runs"
    runs = ["--rate", "1", "--duration", "1", "--runs-dir", str(saved)]

    web = lab_load("--url", f"http://127.0.0.1:{nothing}", *runs)
    assert web.returncode == 1
    assert f"cannot read http://127.0.0.1:{nothing}/api/status" in web.stderr
    assert "--url http://HOST:8888" in web.stderr

    token = cluster.operator_token  # as OPERATOR_TOKEN: the flag's variable
    no_token = lab_load("--url", cluster.web_url, *runs)
    assert no_token.returncode == 1
    assert "operator token required" in no_token.stderr and "--token TOKEN" in no_token.stderr
    wrong_token = lab_load("--url", cluster.web_url, "--token", "wrong", *runs)
    assert wrong_token.returncode == 1
    assert "operator token refused" in wrong_token.stderr and "--token TOKEN" in wrong_token.stderr

    grpc = lab_load("--url", cluster.web_url, "--grpc", f"127.0.0.1:{nothing}", *runs, token=token)
    assert grpc.returncode == 1
    assert f"gRPC endpoint 127.0.0.1:{nothing} does not answer" in grpc.stderr
    assert "--grpc HOST:PORT" in grpc.stderr

    broker = lab_load("--url", cluster.web_url, "--mqtt", f"mqtt://observer:x@127.0.0.1:{nothing}", *runs, token=token)
    assert broker.returncode == 1
    assert f"cannot reach the broker at 127.0.0.1:{nothing}" in broker.stderr
    assert "--mqtt mqtt://observer:PASSWORD@HOST:1883" in broker.stderr

    login = lab_load(
        "--url", cluster.web_url, "--mqtt", f"mqtt://observer:wrong@127.0.0.1:{cluster.mqtt_port}", *runs, token=token
    )
    assert login.returncode == 1
    assert "refused the login" in login.stderr and "--mqtt" in login.stderr
    assert "wrong" not in login.stderr  # the password is never shown

    assert not saved.exists()  # nothing ran, nothing saved
    # From Python (a notebook), the error names the argument instead.
    with pytest.raises(AttachError, match=r"grpc_endpoint='HOST:PORT'"):
        attach(cluster.web_url, f"127.0.0.1:{nothing}", token=token)
    with pytest.raises(AttachError, match=r"url='http://HOST:8888'"):
        attach(f"http://127.0.0.1:{nothing}")
    right = cluster.credentials.login("observer")
    attach(cluster.web_url, mqtt=f"mqtt://{right[0]}:{right[1]}@127.0.0.1:{cluster.mqtt_port}", token=token)
