"""Tests of `lab up` and LocalCluster with the real Mosquitto, master and workers: ready, status, no orphans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab.loadgen.client import ChatClient
from lab.paths import REPO_ROOT
from lab.system import ClusterStartError, LocalCluster
from lab.system.broker import MosquittoNotFoundError, find_mosquitto
from lab.system.ports import free_port

pytestmark = pytest.mark.integration

MARKER_VAR = "LAB_TEST_MARKER"
READY_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 12.0


@pytest.fixture(autouse=True)
def _mosquitto_installed() -> None:
    try:
        find_mosquitto()
    except MosquittoNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(f"{e} (CI fails here)")


def marked_pids(marker: str) -> set[int]:
    """Live processes whose environment carries this test's marker (every child inherits it)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # A zombie has an empty environ: it no longer runs, so it does not count.
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.add(int(entry.name))
    return found


def wait_gone(marker: str, timeout: float) -> set[int]:
    """Wait until no marked process remains; return those left at the timeout."""
    deadline = time.monotonic() + timeout
    while (left := marked_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def describe_pids(pids: set[int]) -> str:
    """Command lines of `pids`, for a failure message."""
    lines = []
    for pid in sorted(pids):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"{pid}: {cmd}")
    return "\n".join(lines)


class LabUp:
    """`lab up` running as a subprocess, with its output collected line by line."""

    def __init__(self, *extra_args: str) -> None:
        self.marker = uuid.uuid4().hex
        self.ports = {"web": free_port(), "grpc": free_port(), "mqtt": free_port()}
        argv = [sys.executable, "-m", "lab.cli", "up", "--workers", "2", "--work-seconds", "0.2"]
        argv += ["--web-port", str(self.ports["web"]), "--grpc-port", str(self.ports["grpc"])]
        argv += ["--mqtt-port", str(self.ports["mqtt"]), "--model-mode", "offline", *extra_args]
        env = {**os.environ, MARKER_VAR: self.marker}
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line matching `pattern`, read within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"lab up exited ({self.proc.wait()}) before printing {pattern!r}:\n{self.output()}")
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no line matching {pattern!r} within {timeout} s:\n{self.output()}")

    def cleanup(self) -> None:
        """Kill whatever a failed test left behind: the lab and any marked process, by pid."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        for pid in marked_pids(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def lab_up() -> Iterator[LabUp]:
    lab = LabUp()
    yield lab
    lab.cleanup()


def _ready(lab: LabUp) -> str:
    """Wait for the ready line, check /api/status, return the chat URL."""
    ready = lab.wait_for(r"^ready: .* chat at (http://\S+) .* dashboard at (http://\S+)", READY_TIMEOUT_S)
    url, dashboard = ready.group(1), ready.group(2)
    assert url == f"http://127.0.0.1:{lab.ports['web']}"
    prefix = f"{url}/dashboard#token="
    assert dashboard.startswith(prefix) and len(dashboard) > len(prefix) + 30, dashboard
    token = dashboard.removeprefix(prefix)
    assert httpx.get(f"{url}/api/status", timeout=5).status_code == 401  # an operator view: the token is needed
    status = httpx.get(f"{url}/api/status", timeout=5, headers={"Authorization": f"Bearer {token}"}).json()
    assert [w["state"] for w in status["workers"]] == ["idle", "idle"], status
    assert status["idle"] == 2
    assert status["queue_length"] == 0
    # The lab itself plus Mosquitto, the master (its core and its web front) and two workers.
    assert len(marked_pids(lab.marker)) == 6, describe_pids(marked_pids(lab.marker))
    return url


def test_lab_up_serves_two_idle_workers_and_sigterm_stops_everything(lab_up: LabUp) -> None:
    _ready(lab_up)
    lab_up.proc.send_signal(signal.SIGTERM)
    try:
        code = lab_up.proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"lab up still running {STOP_TIMEOUT_S} s after SIGTERM:\n{lab_up.output()}")
    assert code == 0, lab_up.output()
    left = wait_gone(lab_up.marker, 1.0)
    assert not left, f"left behind:\n{describe_pids(left)}"
    assert "lab up: stopped" in lab_up.output()


def test_sigkill_of_lab_up_leaves_no_orphans(lab_up: LabUp) -> None:
    _ready(lab_up)
    lab_up.proc.kill()
    lab_up.proc.wait()
    # The children get SIGTERM from the kernel (parent-death signal) and stop on their own.
    left = wait_gone(lab_up.marker, STOP_TIMEOUT_S)
    assert not left, f"orphans after SIGKILL of lab up:\n{describe_pids(left)}"


def test_taken_port_is_named_before_anything_starts() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        taken = server.getsockname()[1]
        lab = LabUp("--mqtt-port", str(taken))  # the last --mqtt-port wins
        try:
            assert lab.proc.wait(timeout=30) == 2
            lab.wait_for(rf"port {taken} \(MQTT\) on 127.0.0.1 is already in use", 5)
            assert "--mqtt-port" in lab.output()
            assert "starting" not in lab.output()
            assert not marked_pids(lab.marker)
        finally:
            lab.cleanup()


def test_local_cluster_adds_and_kills_workers() -> None:
    lines: list[tuple[str, str]] = []
    cluster = LocalCluster(
        workers=1,
        work_seconds=0.2,
        web_port=0,
        grpc_port=0,
        mqtt_port=0,
        model_mode="offline",
        log_sink=lambda name, line: lines.append((name, line)),
        restart=False,  # a killed worker stays dead (test_supervision covers its replacement)
    )
    with cluster:
        state = cluster.state_dir
        assert state is not None and (state / "broker" / "mosquitto.passwd").is_file()
        first = cluster.worker_ids[0]
        assert [w["worker_id"] for w in cluster.status()["workers"]] == [first]
        assert set(cluster.processes) == {"mosquitto", "master", "worker-1"}

        second = cluster.add_worker()
        assert re.fullmatch(r"python-worker-[0-9a-f]{6}", second)
        states = {w["worker_id"]: w["state"] for w in cluster.status()["workers"]}
        assert states == {first: "idle", second: "idle"}

        cluster.kill_worker(second)
        assert cluster.processes["worker-2"].returncode == -signal.SIGKILL
        assert cluster.worker_ids == [first]
        assert cluster.exited() == {}  # killed on purpose, not a crash
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = {w["worker_id"]: w["state"] for w in cluster.status()["workers"]}
            if states.get(second) == "offline":
                break
            time.sleep(0.1)
        assert states == {first: "idle", second: "offline"}
        pids = [p.pid for p in cluster.processes.values()]
    assert all(not p.alive for p in cluster.processes.values())
    assert all(not Path(f"/proc/{pid}/environ").exists() for pid in pids)
    assert not state.exists()  # the journal and the password file go with the cluster
    names = {name for name, _ in lines}
    assert {"mosquitto", "master", "worker-1", "worker-2"} <= names


@pytest.mark.parametrize(
    ("bad_env", "culprit"),
    [({"MAX_QUERY_CHARS": "lots"}, "master"), ({"GEMINI_TIMEOUT_SECONDS": "soon"}, "worker-1")],
)
def test_startup_failure_names_the_process_and_shows_its_log(bad_env: dict[str, str], culprit: str) -> None:
    cluster = LocalCluster(
        workers=1,
        web_port=0,
        grpc_port=0,
        mqtt_port=0,
        model_mode="offline",
        extra_env=bad_env,
        log_sink=lambda name, line: None,
    )
    with pytest.raises(ClusterStartError) as info:
        cluster.start()
    message = str(info.value)
    assert message.startswith(f"{culprit} exited with code 2 while waiting for")
    assert f"  {culprit} | " in message
    assert "bad setting" in message
    assert all(not p.alive for p in cluster.processes.values())


async def _ask_one(url: str) -> None:
    """One question answered: the master logs a line about its task."""
    async with ChatClient(url) as user:
        assert (await user.ask("quiet or not?")).task_id
        await user.wait_answers(1, timeout=20)


def _worker_pid(lab: LabUp) -> int:
    """The pid of one worker `lab up` runs."""
    for pid in sorted(marked_pids(lab.marker)):
        with contextlib.suppress(OSError):
            if b"services.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    pytest.fail(f"no worker among:\n{describe_pids(marked_pids(lab.marker))}")


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_lab_up_says_what_matters_and_streams_logs_only_when_verbose(verbose: bool) -> None:
    lab = LabUp(*(["--verbose"] if verbose else []))
    try:
        url = lab.wait_for(r"^ready: .* chat at (http://\S+)", READY_TIMEOUT_S).group(1)
        asyncio.run(_ask_one(url))
        os.kill(_worker_pid(lab), signal.SIGKILL)
        # The three lines come in no fixed order: the master's view and the supervisor's are independent.
        for pattern in (
            r"^lab up: worker python-worker-[0-9a-f]+ left \(\d workers? online\)$",
            r"^lab up: restarted worker-\d \(killed by SIGKILL\) as worker-3 ",
            r"^lab up: worker python-worker-[0-9a-f]+ \(python\) joined \(\d workers online\)$",
        ):
            deadline = time.monotonic() + 15
            while not re.search(pattern, lab.output(), re.MULTILINE):
                if time.monotonic() > deadline:
                    pytest.fail(f"no line matching {pattern!r}:\n{lab.output()}")
                time.sleep(0.1)
        lab.proc.send_signal(signal.SIGTERM)
        assert lab.proc.wait(timeout=STOP_TIMEOUT_S) == 0, lab.output()
        assert not wait_gone(lab.marker, 2.0)
    finally:
        lab.cleanup()
    out = lab.output()
    assert "lab up: stopped" in out
    # A line about one task (the workers log theirs; the master's go to its log only with TASK_MESSAGES).
    per_task = re.compile(r"^(master|worker-\d+) +\| .*task [0-9a-f]{8} ", re.MULTILINE)
    if verbose:
        assert per_task.search(out), out
        assert re.search(r"^worker-1 +\| ", out, re.MULTILINE), out
    else:
        assert not per_task.search(out), out
        assert not re.search(r"^(mosquitto|master|worker-\d+) +\| ", out, re.MULTILINE), out
        assert "--verbose shows their logs" in out


def test_lab_up_ha_runs_standby_masters_behind_the_proxy_and_stops_them_all() -> None:
    lab = LabUp("--ha")
    try:
        ready = lab.wait_for(r"^ready: .*master-(\d) leads \(epoch (\d+)\).* chat at (http://\S+)", READY_TIMEOUT_S)
        url = ready.group(3)
        assert url == f"http://127.0.0.1:{lab.ports['web']}"  # the proxy's port
        leader = httpx.get(f"{url}/leader", timeout=5).json()
        assert leader == {"leading": True, "epoch": int(ready.group(2)), "name": f"master-{ready.group(1)}"}
        # The lab, three Mosquittos, three etcd members, HAProxy, three masters (core and web front) and two workers:
        # a standby has no web front until it leads.
        assert len(marked_pids(lab.marker)) == 1 + 3 + 3 + 1 + 3 + 1 + 2, describe_pids(marked_pids(lab.marker))
        lab.proc.send_signal(signal.SIGTERM)
        assert lab.proc.wait(timeout=3 * STOP_TIMEOUT_S) == 0, lab.output()
        left = wait_gone(lab.marker, 1.0)
        assert not left, f"left behind:\n{describe_pids(left)}"
    finally:
        lab.cleanup()
