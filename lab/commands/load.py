"""`lab load`: start a local system (or attach to a running one), drive load at it while collecting, and save
the run under data/runs/ with its KPI table and charts.

Only what the parser needs is imported at the top; the experiment (pandas, gRPC, MQTT, Socket.IO) is
imported by the functions that run it, so that `lab --help` stays fast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.commands.fleet import add_workers_option, workers_count
from lab.commands.report import print_report
from lab.loadgen import arrivals
from lab.paths import RUNS_DIR
from lab.system.broker import MosquittoNotFoundError
from lab.system.local import LocalCluster
from lab.system.presets import GEMINI_LIKE_LATENCY_MS, GEMINI_LIKE_SD_MS, lab_cluster
from lab.system.readiness import ClusterStartError
from lab.system.workers import WorkerUnavailableError, fleet_text

if TYPE_CHECKING:
    from lab.runs import Run
    from lab.system.target import Target

ARRIVALS = ("poisson", "constant", "ramp", "burst", "replay", "closed")


def register(commands: Any) -> None:
    """Add the `load` subcommand to the `lab` parser's subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "load",
        help="drive load at a local (or running) system and save the run with its KPIs and charts",
        description="Start Mosquitto, the master and workers locally (or attach to a running system with "
        "--url), send questions over Socket.IO on an arrival schedule while collecting every task and worker "
        "event over gRPC and MQTT, then print the KPI table and save the run under data/runs/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    system = parser.add_argument_group("the system")
    add_workers_option(system, default=4)
    system.add_argument("--work-seconds", type=float, default=10.0, metavar="S", help="simulated work per task")
    system.add_argument(
        "--model-latency-ms", type=float, default=GEMINI_LIKE_LATENCY_MS, help="offline model's mean latency"
    )
    system.add_argument(
        "--model-latency-sd-ms",
        type=float,
        default=None,
        help=f"its spread (lognormal; default {GEMINI_LIKE_SD_MS:g}, or 0 with --model-latency-ms 0)",
    )
    system.add_argument("--url", help="attach to the master serving this URL instead of starting a system")
    system.add_argument(
        "--grpc",
        metavar="HOST:PORT",
        help="with --url: the master's gRPC endpoint (default: the one its /api/status names, on the URL's host)",
    )
    system.add_argument("--mqtt", metavar="URL", help="with --url: mqtt://observer:PASSWORD@host:1883")
    system.add_argument(
        "--token",
        metavar="TOKEN",
        help="with --url: the master's operator token, for its /api/status (default: $OPERATOR_TOKEN; `lab up` "
        "prints it in the dashboard's URL)",
    )
    system.add_argument(
        "--service-seconds", type=float, help="with --url and --utilization: the mean time a worker takes per task"
    )
    load = parser.add_argument_group("the load")
    load.add_argument("--arrival", choices=ARRIVALS, default="poisson", help="how questions arrive")
    rate = load.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, metavar="R", help="questions per second (start rate of a ramp)")
    rate.add_argument(
        "--utilization", type=float, default=0.75, metavar="U", help="or: the rate that keeps this share busy"
    )
    load.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds of sending")
    load.add_argument("--users", type=int, default=50, metavar="N", help="concurrent Socket.IO users")
    load.add_argument("--end-rate", type=float, metavar="R", help="ramp: the rate at the end")
    load.add_argument("--burst-rate", type=float, metavar="R", help="burst: the rate during the burst")
    load.add_argument("--burst-at", type=float, metavar="S", help="burst: when it starts (default: a third in)")
    load.add_argument("--burst-length", type=float, metavar="S", help="burst: how long (default: a sixth)")
    load.add_argument("--replay", type=Path, metavar="CSV", help="replay: a CSV with a column t of send times")
    load.add_argument("--think-time", type=float, default=5.0, metavar="S", help="closed: mean think time")
    load.add_argument("--seed", type=int, default=0, help="seed of the random arrivals")
    out = parser.add_argument_group("the run")
    out.add_argument("--label", default="load", help="part of the run id")
    out.add_argument("--runs-dir", type=Path, default=RUNS_DIR, metavar="DIR", help="where runs are saved")
    out.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no live stats (a table redrawn every 2 s on a terminal, a line every 5 s otherwise)",
    )
    out.add_argument("--no-charts", dest="charts", action="store_false", help="save no PNG charts")
    parser.set_defaults(run=run)


def check(args: argparse.Namespace) -> None:
    """Refuse bad arguments before anything starts (ValueError naming the option)."""
    if not args.url and workers_count(args.workers) < 1:
        raise ValueError(f"--workers must name at least 1 worker, got {fleet_text(args.workers)}")
    if args.duration <= 0:
        raise ValueError(f"--duration must be > 0, got {args.duration}")
    if args.users < 1:
        raise ValueError(f"--users must be at least 1, got {args.users}")
    if args.rate is not None and args.rate <= 0:
        raise ValueError(f"--rate must be > 0, got {args.rate}")
    if args.rate is None and args.utilization <= 0:
        raise ValueError(f"--utilization must be > 0, got {args.utilization}")
    if args.arrival == "replay":
        if args.replay is None:
            raise ValueError("--arrival replay needs --replay CSV (a column t of send times)")
        if not args.replay.is_file():
            raise ValueError(f"--replay {args.replay}: no such file")
    if args.model_latency_ms < 0 or (args.model_latency_sd_ms or 0) < 0:
        raise ValueError("--model-latency-ms and --model-latency-sd-ms must be >= 0")
    if args.model_latency_ms == 0 and (args.model_latency_sd_ms or 0) > 0:
        raise ValueError("--model-latency-sd-ms needs a mean: give --model-latency-ms > 0 too")
    if (args.grpc or args.mqtt or args.service_seconds or args.token) and not args.url:
        raise ValueError("--grpc, --mqtt, --token and --service-seconds go with --url")


def model_sd_ms(args: argparse.Namespace) -> float:
    """The offline model's latency spread: as given, else Gemini-like, or none for a model without latency."""
    if args.model_latency_sd_ms is not None:
        return float(args.model_latency_sd_ms)
    return GEMINI_LIKE_SD_MS if args.model_latency_ms > 0 else 0.0


def _rate(args: argparse.Namespace, workers: int) -> float:
    from lab.experiment import mean_service_s, rate_for_utilization

    if args.rate is not None:
        return float(args.rate)
    if args.url and args.service_seconds is None:
        raise ValueError("with --url, give --rate, or --utilization with --service-seconds")
    service = args.service_seconds or mean_service_s(args.work_seconds, args.model_latency_ms)
    return rate_for_utilization(args.utilization, workers, service)


def schedule_for(args: argparse.Namespace, rate: float) -> list[float]:
    """The send times the arguments ask for."""
    if args.arrival == "poisson":
        return arrivals.poisson(rate, args.duration, seed=args.seed)
    if args.arrival == "constant":
        return arrivals.constant(rate, args.duration)
    if args.arrival == "ramp":
        return arrivals.ramp(rate, args.end_rate if args.end_rate is not None else 2 * rate, args.duration, args.seed)
    if args.arrival == "burst":
        start = args.burst_at if args.burst_at is not None else args.duration / 3
        length = args.burst_length if args.burst_length is not None else args.duration / 6
        peak = args.burst_rate if args.burst_rate is not None else 3 * rate
        return arrivals.burst(rate, peak, start, length, args.duration, args.seed)
    if args.replay is None:
        raise ValueError("--arrival replay needs --replay CSV")
    return arrivals.replay_csv(args.replay)


def _drive(system: LocalCluster | Target, args: argparse.Namespace) -> Run:
    from lab.experiment import run_closed, run_open

    workers = len(system.worker_ids) if isinstance(system, LocalCluster) else _online(system)
    # The utilization asked for, so that charts can put runs on a load axis; a given --rate has none.
    params: dict[str, Any] = {} if args.rate is not None else {"target_utilization": args.utilization}
    if args.arrival == "closed":
        params.pop("target_utilization", None)
        return run_closed(
            system,
            label=args.label,
            users=args.users,
            duration_s=args.duration,
            think_time_s=args.think_time,
            params=params,
            progress=args.progress,
            seed=args.seed,
        )
    rate = _rate(args, max(workers, 1))
    schedule = schedule_for(args, rate)
    duration = args.duration if args.arrival != "replay" else None
    print(f"sending {len(schedule)} questions ({args.arrival}, {rate:.3g}/s) from {args.users} users", flush=True)
    return run_open(
        system,
        schedule,
        label=args.label,
        users=args.users,
        duration_s=duration,
        arrival=args.arrival,
        params=params,
        progress=args.progress,
    )


def _online(target: Target) -> int:
    return sum(w.state in ("idle", "busy") for w in target.status_report().workers)


def run(args: argparse.Namespace) -> int:
    """Run the load, save the run, print its report; 2 on bad arguments, 1 when the system fails."""
    from lab.charts import save_run
    from lab.system.target import CLI_FLAGS, AttachError, attach

    try:
        check(args)
        if args.url:
            target = attach(args.url, args.grpc, args.mqtt, token=args.token, fixes=CLI_FLAGS)
            print(
                f"attached to {target.web_url}, gRPC {target.grpc_endpoint} ({_online(target)} workers online)",
                flush=True,
            )
            result = _drive(target, args)
        else:
            print(
                f"starting workers ({fleet_text(args.workers)}, work {args.work_seconds:g} s, offline model)",
                flush=True,
            )
            with lab_cluster(args.workers, args.work_seconds, args.model_latency_ms, model_sd_ms(args)) as cluster:
                result = _drive(cluster, args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lab load: {exc}", file=sys.stderr)
        return 2
    except (AttachError, ClusterStartError, MosquittoNotFoundError, WorkerUnavailableError) as exc:
        print(f"lab load: {exc}", file=sys.stderr)
        return 1
    folder = save_run(result, args.runs_dir) if args.charts else result.save(args.runs_dir)
    print_report(result)
    print(f"\nsaved in {folder}; `lab report {result.run_id}` shows it again")
    return 0
