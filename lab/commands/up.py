"""`lab up`: run the whole system locally until Ctrl-C or SIGTERM.

By default it says what matters: the ready line, restarts, workers that join or leave, the autoscaler's changes
of the fleet (with --autoscale), and the processes' errors; `--verbose` streams every process's log too.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from lab.commands.fleet import add_workers_option, workers_count
from lab.system.autoscaling import AUTOSCALER, Autoscale, autoscale_text, parse_autoscale
from lab.system.broker import MosquittoNotFoundError
from lab.system.config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_MODEL_MODE,
    DEFAULT_MQTT_PORT,
    DEFAULT_WEB_PORT,
    DEFAULT_WORK_SECONDS,
    MODEL_MODES,
)
from lab.system.etcd import EtcdNotFoundError
from lab.system.ha import HaCluster
from lab.system.haproxy import HaproxyNotFoundError
from lab.system.local import LocalCluster
from lab.system.ports import PortInUseError, free_port
from lab.system.readiness import ClusterStartError, tail_text
from lab.system.spec import ClusterSpec
from lab.system.supervision import describe_exit
from lab.system.workers import WorkerUnavailableError, fleet_text
from services.protocol import StatusReport

_PORT_FLAGS = {"MQTT": "--mqtt-port", "web": "--web-port", "gRPC": "--grpc-port"}
_ESSENTIAL = ("mosquitto", "master")  # without these the system is down; a lost worker is survivable
# The start of a log record: the Python services' "<date> <time> LEVEL name: ...", or uvicorn's "LEVEL: ...".
# Without --verbose, records at ERROR and above are shown, with the lines that follow them (a traceback).
_RECORD = re.compile(r"^(?:\d{4}-\d\d-\d\d \S+ )?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
_SHOWN_LEVELS = ("ERROR", "CRITICAL")
_DECISION = " services.autoscaler.report: "  # the autoscaler's changes of the fleet are shown too (INFO)
_PRESENCE_EVERY_S = 1.0  # how often the master is asked which workers are online


def register(commands: Any) -> None:
    """Add the `up` subcommand to the `lab` parser's subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "up",
        help="start Mosquitto, the master and workers locally (Ctrl-C stops them)",
        description="Start Mosquitto, the master and workers (Python, Go, Java in any mix) as local processes, "
        "print the chat URL, then what happens (restarts, workers joining or leaving, errors; with --verbose "
        "every process's log) until Ctrl-C or SIGTERM, then stop them all. A port of 0 means any free port.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_workers_option(parser, default=2)
    parser.add_argument(
        "--autoscale",
        type=autoscale_arg,
        default=None,
        metavar="MIN..MAX",
        help="let the autoscaler start and stop workers between MIN and MAX (e.g. 1..8) by the load: it owns the "
        "whole fleet, of --workers' language (its count is not used); COOLDOWN_S, SCALE_DOWN_WINDOW_S, "
        "LATENCY_TARGET_S, UTILIZATION_LOW/HIGH in the environment tune it",
    )
    parser.add_argument(
        "--ha",
        action="store_true",
        help="standby masters, as in the highly available stack: three masters on a three-member etcd cluster "
        "(needs etcd-server), HAProxy in front sending to the one that leads (needs haproxy); --web-port and "
        "--grpc-port are HAProxy's; kill the leader and another takes over (DEPLOY.md: Standby masters)",
    )
    parser.add_argument(
        "--work-seconds", type=float, default=DEFAULT_WORK_SECONDS, metavar="S", help="simulated long work per task"
    )
    parser.add_argument(
        "--web-port", type=int, default=DEFAULT_WEB_PORT, metavar="P", help="HTTP/Socket.IO port (chat)"
    )
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, metavar="G", help="gRPC result port")
    parser.add_argument("--mqtt-port", type=int, default=DEFAULT_MQTT_PORT, metavar="M", help="Mosquitto port")
    parser.add_argument("--model-mode", choices=MODEL_MODES, default=DEFAULT_MODEL_MODE, help="how workers answer")
    parser.add_argument(
        "--startup-timeout", type=float, default=30.0, metavar="S", help="give up starting after this long"
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="let the original system's workers join: anonymous MQTT clients may register, report status, log "
        "and read task topics, and the master accepts results without task id and token (README: Baseline "
        "workers)",
    )
    parser.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="do not restart a process that dies (by default the broker and the master come back on the same "
        "ports and a dead worker is replaced by a new one, unless it keeps crashing)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream every process's log (name | line); without it only their errors are shown",
    )
    parser.set_defaults(run=run)


def autoscale_arg(text: str) -> Autoscale:
    """argparse type: `MIN..MAX`, e.g. `2..8`, with the parser's message on anything else."""
    try:
        return parse_autoscale(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _Printer:
    """Prints log lines as `name | line` with aligned names (all of them when `verbose`, else only errors), and
    the lab's own messages, one whole line at a time."""

    def __init__(self, width: int, verbose: bool = True) -> None:
        self._width = width
        self._verbose = verbose
        self._showing: dict[str, bool] = {}  # process -> whether its current record is shown (quiet mode)
        # Reader threads and the main thread print concurrently; print() writes text and newline separately.
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        """Print one log line of process `name` (the cluster's log sink), if it is worth it."""
        if not self._verbose:
            # Each process has its own reader thread: only that thread touches its entry.
            if record := _RECORD.match(line):
                self._showing[name] = record.group(1) in _SHOWN_LEVELS or _DECISION in line
            elif line.startswith("Traceback (most recent call last)"):
                self._showing[name] = True  # an exception nobody logged: the process is dying of it
            if not self._showing.get(name, False):
                return
        self.say(f"{name:<{self._width}} | {line}")

    def say(self, text: str, error: bool = False) -> None:
        """Print a message of the lab itself, on stderr when it is an `error`."""
        with self._lock:
            print(text, file=sys.stderr if error else sys.stdout, flush=True)


class _Stop(Exception):
    """Raised in the main thread when SIGTERM asks the lab to stop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: unwind like Ctrl-C does, so the same cleanup path runs."""
    raise _Stop


@contextmanager
def _stop_signals() -> Iterator[None]:
    """Turn SIGTERM into _Stop and SIGINT into KeyboardInterrupt for the duration, then restore both."""
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def _ignore_stop_signals() -> None:
    """While stopping, a second Ctrl-C must not cut the cleanup short (it waits at most a few seconds)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def port_advice(error: PortInUseError) -> str:
    """What to do about a port that is taken."""
    flag = _PORT_FLAGS.get(error.role, "--<role>-port")
    lines = [
        f"lab up: {error}.",
        f"  Choose another with {flag}, e.g. {flag} {free_port(error.host)} (or {flag} 0 for any free port).",
    ]
    if error.role == "MQTT" and error.port == DEFAULT_MQTT_PORT:
        lines.append(
            "  Debian's mosquitto package runs a system broker there; stop it with `sudo systemctl stop mosquitto`."
        )
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    """`1 worker`, `2 workers`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ready_line(cluster: LocalCluster) -> str:
    """The one-line summary printed once everything is up."""
    status = cluster.status_report()
    workers, idle = len(status.workers), status.idle
    who = _plural(workers, "worker") + (" idle" if idle == workers else f" ({idle} idle)")
    if (bounds := cluster.spec.autoscale) is not None:
        who += f", autoscaled {bounds[0]}..{bounds[1]}"
    if isinstance(cluster, HaCluster) and (found := cluster.leader()) is not None:
        who += f", {found[0].name} leads (epoch {found[1]})"
    # The dashboard's URL carries the operator token (in its fragment): the one place `lab up` shows it.
    return (
        f"ready: {who}, queue {status.queue_length} — chat at {cluster.web_url} · dashboard at "
        f"{cluster.dashboard_url}  (Ctrl-C to stop)"
    )


class Presence:
    """The workers the master has online (any state but offline), and who joined or left since the last look."""

    def __init__(self) -> None:
        self._online: set[str] = set()

    def update(self, status: StatusReport) -> list[str]:
        """Take the master's status; return one line per worker that came online or went offline since."""
        changes = []
        for worker in status.workers:
            online = worker.state != "offline"
            # A worker missing from the status (a master that restarted and has not heard from it yet, or one
            # that forgot it) is neither: only the master's word "offline" makes it leave.
            if online and worker.worker_id not in self._online:
                self._online.add(worker.worker_id)
                change = f"worker {worker.worker_id} ({worker.language}) joined"
            elif not online and worker.worker_id in self._online:
                self._online.remove(worker.worker_id)
                change = f"worker {worker.worker_id} left"
            else:
                continue
            changes.append(f"lab up: {change} ({_plural(len(self._online), 'worker')} online)")
        return changes


def _look(cluster: LocalCluster, presence: Presence) -> list[str]:
    """Who joined or left, by the master's status; nothing while the master does not answer."""
    import httpx  # here: the `lab` parser must not import it

    try:
        status = cluster.status_report()
    except (httpx.HTTPError, ValueError):  # restarting, or not answering yet: look again next time
        return []
    return presence.update(status)


def _watch(cluster: LocalCluster, out: _Printer, restart: bool, verbose: bool) -> int:
    """Block until a stop signal (returns 0 via the caller) or an essential process is down for good
    (returns 1): with `restart`, when the supervisor gave up on it; without, as soon as it exits. Meanwhile
    say which workers join and leave."""
    reported: set[str] = set()
    presence = Presence()
    _look(cluster, presence)  # the ready line counted those already there
    next_look = time.monotonic() + _PRESENCE_EVERY_S
    while True:
        time.sleep(0.5)
        if time.monotonic() >= next_look:
            for line in _look(cluster, presence):
                out.say(line)
            next_look = time.monotonic() + _PRESENCE_EVERY_S
        # The supervisor says itself what it restarted and what it gave up on (on_event).
        down = cluster.given_up if restart else cluster.exited()
        for name, code in down.items():
            if name in reported:
                continue
            reported.add(name)
            how = "keeps crashing" if restart else f"exited unexpectedly ({describe_exit(code)})"
            proc = cluster.processes.get(name)
            if not verbose and proc is not None and (restart or code > 0):
                out.say(tail_text(proc), error=True)  # a crash whose log was not shown: what it said last
            if name in _ESSENTIAL:
                out.say(f"lab up: {name} {how}; stopping everything", error=True)
                return 1
            if not restart:
                out.say(f"lab up: {name} {how}; the others keep running", error=True)


def run(args: argparse.Namespace) -> int:
    """Run `lab up` with parsed `args`; returns the exit code."""
    # Room for the names of a few generations of restarted workers too.
    names = ("mosquitto", AUTOSCALER if args.autoscale else "", f"worker-{workers_count(args.workers) * 10}")
    out = _Printer(max(map(len, names)), args.verbose)
    try:
        spec = ClusterSpec(
            workers=args.workers,
            work_seconds=args.work_seconds,
            web_port=args.web_port,
            grpc_port=args.grpc_port,
            mqtt_port=args.mqtt_port,
            model_mode=args.model_mode,
            log_sink=out,
            startup_timeout=args.startup_timeout,
            baseline=args.baseline,
            restart=args.restart,
            on_event=lambda text: out.say(f"lab up: {text}"),
            autoscale=args.autoscale,
        )
        cluster = HaCluster(spec) if args.ha else LocalCluster(spec)
    except ValueError as error:
        out.say(f"lab up: {error}", error=True)
        return 2
    cfg = cluster.config
    fleet = (
        fleet_text(args.workers) if args.autoscale is None else autoscale_text(args.autoscale, spec.autoscale_language)
    )
    with _stop_signals():
        try:
            cluster.check_ports()
            masters = "3 standby masters on etcd behind HAProxy" if args.ha else "the master"
            out.say(
                f"lab up: starting Mosquitto on {cfg.host}:{cfg.mqtt_port}, {masters} (web {cfg.web_port}, "
                f"gRPC {cfg.grpc_port}) and workers ({fleet})"
                + ("" if args.verbose else "; --verbose shows their logs")
            )
            cluster.start()
            out.say(_ready_line(cluster))
            return _watch(cluster, out, args.restart, args.verbose)
        except PortInUseError as error:
            out.say(port_advice(error), error=True)
            return 2
        except (
            MosquittoNotFoundError,
            ClusterStartError,
            WorkerUnavailableError,
            EtcdNotFoundError,
            HaproxyNotFoundError,
        ) as error:
            out.say(f"lab up: {error}", error=True)
            return 1
        except (KeyboardInterrupt, _Stop):
            _ignore_stop_signals()
            out.say("lab up: stopping...")
            return 0
        finally:
            _ignore_stop_signals()
            cluster.stop()
            if cluster.processes:
                out.say("lab up: stopped")
