"""Child processes that cannot outlive the lab: own process group, parent-death signal, streamed output."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

LogSink = Callable[[str, str], None]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""Receives (process name, log line without the newline)."""

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_TAIL_LINES = 200


def _parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec function asking Linux to send `sig` to the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before fork: the child of a threaded parent should do as little as possible.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl; then the signal would never come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _with_parent_death_signal(argv: list[str], sig: signal.Signals) -> tuple[list[str], Callable[[], None] | None]:
    """`argv` and a preexec function such that the child gets `sig` when its parent dies.

    Through util-linux's `setpriv --pdeathsig` where there is one (it sets the signal and execs `argv`, same
    pid), so that no preexec function runs: with one, Python must fork() instead of vfork(), and a fork()
    runs the atfork handlers of gRPC's C core, which a lab holding gRPC channels has, and which aborted
    children (exit -6) before they could exec.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is not None:
        return [setpriv, "--pdeathsig", sig.name.removeprefix("SIG"), "--", *argv], None
    return argv, _parent_death_signal(sig)


_print_lock = threading.Lock()


def print_line(name: str, line: str) -> None:
    """The default log sink: `name | line` on stdout."""
    # Reader threads print concurrently; one line at a time keeps lines whole.
    with _print_lock:
        print(f"{name} | {line}", flush=True)


class ManagedProcess:
    """One child process in its own process group, with its merged stdout/stderr streamed line by line."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        sink: LogSink | None = None,
    ) -> None:
        """Start `argv` now; it gets SIGTERM if this process (strictly: the spawning thread) dies."""
        self.name = name
        self.argv = list(argv)
        self._sink = sink or print_line
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._tail_lock = threading.Lock()
        self._stopping = False
        self.started_at = time.monotonic()
        """time.monotonic() when it was started."""
        command, preexec = _with_parent_death_signal(self.argv, signal.SIGTERM)
        self._popen = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            # Own group: stop() can signal helpers the child started too, and Ctrl-C in the lab's
            # terminal reaches only the lab, which then stops everything in order.
            start_new_session=True,
            preexec_fn=preexec,
        )
        self._reader = threading.Thread(target=self._pump, name=f"log-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        return self._popen.poll()

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.returncode is None

    @property
    def stopped_on_purpose(self) -> bool:
        """Whether the lab stopped it (terminate, stop): an exit after that is expected, not to be restarted."""
        return self._stopping

    def has_exited(self) -> bool:
        """Whether the process has exited, without reaping it (so its process group id stays reserved)."""
        return self._exited()

    def tail(self, lines: int = 20) -> list[str]:
        """The last `lines` lines of output."""
        with self._tail_lock:
            return list(self._tail)[-lines:]

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the whole process group; no-op once the process has been reaped.

        This alone does not mark the process as stopped on purpose: a process killed this way counts as
        having died (a fault to inject), and a supervisor restarts it.
        """
        if self._popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def terminate(self) -> None:
        """Ask the process group to stop (SIGTERM) without waiting; marks it as stopped on purpose."""
        self._stopping = True
        self.send_signal(signal.SIGTERM)
        # A paused process (SIGSTOP, an experiment) would hold the SIGTERM until the SIGKILL; let it run.
        self.send_signal(signal.SIGCONT)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the exit, leaving it unreaped; True when it has exited."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, grace: float = 5.0) -> int:
        """Terminate, wait up to `grace` seconds, then SIGKILL; reap and return the exit code."""
        self.terminate()
        return self.finish(time.monotonic() + grace)

    def reap(self) -> int:
        """After the process exited: end what is left of its group, reap it and return the exit code."""
        return self.finish(time.monotonic())

    def finish(self, deadline: float) -> int:
        """After terminate(): wait until the monotonic `deadline`, then kill what is left; reap; exit code."""
        self.wait(deadline - time.monotonic())
        # SIGKILL the group while the leader is at most a zombie, so its id cannot have been reused: this
        # ends the leader if it ignored SIGTERM and any helper it started (they would hold our pipe open).
        self.send_signal(signal.SIGKILL)
        code = self._popen.wait()
        self._reader.join(timeout=2.0)
        return code

    def _exited(self) -> bool:
        """Whether the process has exited, without reaping it (so its group id stays reserved)."""
        if self._popen.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self._popen.poll() is not None
        return info is not None

    def _pump(self) -> None:
        """Reader thread: pass each output line to the sink and keep the last ones."""
        assert self._popen.stdout is not None
        sink_ok = True
        with self._popen.stdout as stream:
            for raw in stream:
                line = raw.rstrip("\r\n")
                with self._tail_lock:
                    self._tail.append(line)
                if not sink_ok:
                    continue
                try:
                    self._sink(self.name, line)
                except Exception:
                    # Reading must go on, or the child blocks on a full pipe; report the sink once.
                    sink_ok = False
                    traceback.print_exc()


class Spawner:
    """One long-lived thread that starts every child, so that their parent-death signal means "the lab died".

    Linux sends PR_SET_PDEATHSIG when the *thread* that forked the child ends, not the process. A daemon
    thread (not an executor's, which Python joins before atexit handlers run) lives until the process
    itself ends, so an atexit stop() can still stop the children in order.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="lab-spawner", daemon=True)
        self._thread.start()

    def call(self, job: Callable[[], T]) -> T:
        """Run `job` on the spawner thread and return its result (or raise its exception)."""
        if self._closed:
            raise RuntimeError("the spawner was closed")
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future.result()

    def close(self) -> None:
        """Finish queued jobs and end the thread (children it started then get their parent-death signal)."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._thread.join()

    def _serve(self) -> None:
        """The thread: run jobs in order until closed."""
        while (item := self._jobs.get()) is not None:
            job, future = item
            try:
                future.set_result(job())
            except BaseException as error:
                future.set_exception(error)


def stop_group(procs: Sequence[ManagedProcess], grace: float) -> None:
    """SIGTERM all of `procs` at once, then give them one shared grace period (SIGKILL after it)."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.finish(deadline)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command in parentheses: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
