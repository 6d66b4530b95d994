"""CPU time and resident memory of whole process groups, read from /proc, and the language of each worker
process of a local cluster.

Every process the lab starts leads its own process group (lab.system.procs.ManagedProcess), so a worker
whose launcher starts the real program as a child (a shell script starting a JVM) is measured whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from lab.system.procs import CLOCK_TICKS
from lab.system.workers import LANGUAGES, worker_kind

if TYPE_CHECKING:
    from lab.system.procs import ManagedProcess

__all__ = ["group_cpu_seconds", "group_pids", "group_rss_mib", "worker_languages"]

_PROC = "/proc"


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command (state is [0], pgrp [2], utime [11], stime [12])."""
    try:
        with open(f"{_PROC}/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def _members(pgid: int) -> Iterator[tuple[str, list[str]]]:
    """(pid, stat fields) of every live process in process group `pgid`."""
    try:
        pids = [p for p in os.listdir(_PROC) if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None and len(fields) > 12 and fields[2] == str(pgid) and fields[0] != "Z":
            yield pid, fields


def group_pids(pgid: int) -> list[str]:
    """The pids of the live processes of group `pgid`."""
    return [pid for pid, _ in _members(pgid)]


def group_cpu_seconds(pgid: int) -> float:
    """User plus system CPU seconds so far of the live processes of group `pgid`; 0 once they are gone."""
    return sum(int(f[11]) + int(f[12]) for _, f in _members(pgid)) / CLOCK_TICKS


def group_rss_mib(pgid: int) -> float:
    """Resident memory (VmRSS) of the live processes of group `pgid`, in MiB; 0 once they are gone."""
    kib = 0
    for pid, _ in _members(pgid):
        try:
            with open(f"{_PROC}/{pid}/status", encoding="ascii", errors="replace") as f:
                kib += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError):
            continue
    return kib / 1024


def worker_languages(processes: Mapping[str, ManagedProcess]) -> dict[str, str]:
    """Process name -> language of each worker process (worker-N), known by the command it was started with."""
    commands = {tuple(worker_kind(language).command()): language for language in LANGUAGES}
    return {
        name: commands[tuple(proc.argv)]
        for name, proc in processes.items()
        if name.startswith("worker-") and tuple(proc.argv) in commands
    }
