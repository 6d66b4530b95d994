"""How far the load generator goes: open loop at rising rates against a local system, or against a stand-in
master that answers at once (lab.bench.echo_master), until it falls behind (see data/README.md)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

from lab.analysis.stats import percentile
from lab.loadgen.arrivals import constant
from lab.loadgen.open_loop import drive_open_loop
from lab.loadgen.options import LoadOptions
from lab.loadgen.users import close_users, connect_users, load_corpus, run_sync
from lab.paths import REPO_ROOT
from lab.system.ports import accepts_tcp, free_port
from lab.system.presets import measurement_cluster
from lab.system.procs import cpu_seconds

__all__ = ["generator_limit"]


@contextlib.contextmanager
def _target(kind: str, workers: int) -> Iterator[tuple[str, dict[str, list[int]]]]:
    """The URL to load and the pids of the processes behind it, by role, while the target runs."""
    if kind == "echo":
        port = free_port()
        echo = subprocess.Popen([sys.executable, "-m", "lab.bench.echo_master", "--port", str(port)], cwd=REPO_ROOT)
        try:
            deadline = time.monotonic() + 15
            while not accepts_tcp("127.0.0.1", port):
                if echo.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the echo master did not start (exit code {echo.poll()})")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}", {"server": [echo.pid]}
        finally:
            echo.terminate()
            echo.wait(5)
        return
    if kind != "system":
        raise ValueError(f"target must be 'system' or 'echo', got {kind!r}")
    with measurement_cluster(workers) as cluster:
        procs = cluster.processes
        yield (
            cluster.web_url,
            {
                "master": [procs["master"].pid],
                "workers": [p.pid for name, p in procs.items() if name.startswith("worker")],
                "broker": [procs["mosquitto"].pid],
            },
        )


async def _step_rates(
    url: str,
    pids: dict[str, list[int]],
    rates: Sequence[float],
    seconds: float,
    users: int,
    lag_limit_s: float,
    latency_limit_s: float,
    progress: bool,
) -> list[dict[str, float]]:
    corpus = load_corpus()
    rows: list[dict[str, float]] = []
    connecting = time.monotonic()
    clients = await connect_users(url, users, progress=progress)
    connect_s = time.monotonic() - connecting
    try:
        for rate in rates:

            def cpu() -> dict[str, float]:
                return {"generator": time.process_time(), **{k: sum(map(cpu_seconds, v)) for k, v in pids.items()}}

            before, wall = cpu(), time.monotonic()
            options = LoadOptions(progress=progress, linger_s=0)
            result = await drive_open_loop(clients, constant(rate, seconds), corpus, options)
            after, wall = cpu(), time.monotonic() - wall
            row: dict[str, float] = {"rate_per_s": rate, "connect_s": round(connect_s, 2), **result.summary()}
            row.update({f"{k}_cpu_pct": round(100 * (after[k] - before[k]) / wall, 1) for k in before})
            rows.append(row)
            lag_p99 = percentile(result.send_lags_s(), 99)
            latency_p99 = percentile(result.latencies_s(), 99)
            if lag_p99 > lag_limit_s or result.unanswered or result.failed or latency_p99 > latency_limit_s:
                break
    finally:
        await close_users(clients)
    return rows


def generator_limit(
    rates: Sequence[float] = (50, 100, 200, 400, 800, 1600),
    seconds: float = 10.0,
    users: int = 100,
    target: str = "system",
    workers: int = 2,
    lag_limit_s: float = 0.05,
    latency_limit_s: float = 1.0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Open loop at each rate in turn until the send lag p99 passes `lag_limit_s` or the answers lag (one
    unanswered or unacknowledged, or latency p99 past `latency_limit_s`); the last row is the one that failed.

    `target` "system" is a local system with `workers` workers, WORK_SECONDS=0 and no model latency;
    "echo" is lab.bench.echo_master, which answers at once, so that only the generator can run out. The same
    `users` stay connected for every rate. Each row is the run's summary, the time to connect the users, and
    the CPU used by this process (the generator) and by each process of the target, in % of one core.
    """
    with _target(target, workers) as (url, pids):
        return run_sync(_step_rates(url, pids, rates, seconds, users, lag_limit_s, latency_limit_s, progress))
