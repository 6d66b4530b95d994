"""Network namespaces as machines on one private bridge (root only), made and removed with a reaper for what a
crashed run left: every name starts with a prefix, and each run records its pid and what it made under /run."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


def run(*argv: str) -> str:
    """Run a command; its stdout, or RuntimeError with its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def netns_pids(netns: str) -> list[int]:
    """Every process in the namespace (none when it is gone)."""
    with contextlib.suppress(RuntimeError):
        return [int(p) for p in run("ip", "netns", "pids", netns).split()]
    return []


def signal_netns(netns: str, sig: signal.Signals) -> None:
    """Send `sig` to every process in the namespace."""
    for pid in netns_pids(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """An exclusive lock on /run (no lock file left behind) while runs pick subnets and reap."""
    fd = os.open("/run", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Network:
    """A bridge with the host's side at .1 of a free `base`.x.0/24, and namespaces each with a veth into it.

    Names: `<prefix><tag>br` (bridge), `<prefix><tag>v<i>` (veths), `<prefix><tag>-n<i>` (namespaces); the
    run's record is /run/<prefix>-runs/<tag>.json. `close()` removes everything, idempotently."""

    def __init__(self, prefix: str, base: str = "10.77") -> None:
        self.prefix, self.base = prefix, base
        self.tag = secrets.token_hex(2)
        self.records = Path("/run") / f"{prefix}-runs"
        self.bridge = f"{prefix}{self.tag}br"
        self.host_ip = ""
        self._net: ipaddress.IPv4Network | None = None
        self._made: dict[str, object] = {"pid": os.getpid(), "netns": [], "links": []}

    def reap(self) -> list[str]:
        """Remove what runs of this prefix that died without cleaning up left; return their records."""
        reaped = []
        for path in sorted(self.records.glob("*.json")) if self.records.exists() else []:
            made = json.loads(path.read_text())
            if not _alive(int(made["pid"])):
                _remove(made)
                path.unlink()
                reaped.append(str(path))
        return reaped

    def _record(self) -> None:
        self.records.mkdir(exist_ok=True)
        (self.records / f"{self.tag}.json").write_text(json.dumps(self._made))

    def open(self) -> None:
        """Reap leftovers, take a free subnet, make the bridge with the host's address on it."""
        with _locked():
            self.reap()
            used = run("ip", "-4", "-o", "addr", "show") + run("ip", "-4", "route", "show")
            free = [n for n in range(1, 255) if f"{self.base}.{n}." not in used]
            self._net = ipaddress.IPv4Network(f"{self.base}.{secrets.choice(free)}.0/24")
            self.host_ip = str(self._net[1])
            self._links().append(self.bridge)
            self._record()  # before making anything: a crash from here on leaves what the reaper finds
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")

    def _links(self) -> list[str]:
        links = self._made["links"]
        assert isinstance(links, list)
        return links

    def add(self, index: int) -> tuple[str, str, str]:
        """Make namespace `index` (1...) with its veth into the bridge; return (netns, host-side veth, address)."""
        assert self._net is not None
        netns, veth, ip = (
            f"{self.prefix}{self.tag}-n{index}",
            f"{self.prefix}{self.tag}v{index}",
            str(self._net[10 + index]),
        )
        namespaces = self._made["netns"]
        assert isinstance(namespaces, list)
        namespaces.append(netns)
        self._links().append(veth)
        self._record()
        run("ip", "netns", "add", netns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run("ip", "link", "set", veth, "master", self.bridge, "up")
        run("ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        return netns, veth, ip

    def close(self) -> None:
        """Kill what runs in the namespaces, delete them, the veths and the bridge, and the record."""
        with _locked():
            _remove(self._made)
            (self.records / f"{self.tag}.json").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.records.rmdir()  # only when no other run is live


def _remove(made: dict[str, object]) -> None:
    """Undo one run: kill what runs in its namespaces, delete its links (veths, bridge), then the namespaces."""
    namespaces, links = made.get("netns", []), made.get("links", [])
    assert isinstance(namespaces, list) and isinstance(links, list)
    for netns in namespaces:
        signal_netns(netns, signal.SIGKILL)
    # The veths explicitly: a namespace outlives its name while orphaned sockets (FIN_WAIT on a cut link) hold
    # it, and its veth pair with it.
    for link in reversed(links):
        with contextlib.suppress(RuntimeError):
            run("ip", "link", "del", link)
    for netns in namespaces:
        with contextlib.suppress(RuntimeError):
            run("ip", "netns", "del", netns)
