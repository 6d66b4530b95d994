"""Local stand-ins for the upstream base images where Docker Hub is unreachable: a Debian base made with
`debootstrap --variant=minbase` from this machine's apt mirror and `docker import`, then Python, Node.js and
Mosquitto on it (lab/swarm/standins/*.Dockerfile). Also the host's extra CA certificates, for builds behind a
TLS-intercepting proxy."""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab.swarm.docker import Docker, DockerError
from lab.swarm.engine import Host

STANDINS_DIR = Path(__file__).resolve().parent / "standins"
BASE_IMAGE = "local/debian:bookworm"
SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# Where Debian keeps the CAs an administrator added (update-ca-certificates reads them from there).
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")


@dataclass(frozen=True)
class StandIn:
    """A stand-in image: its Dockerfile in lab/swarm/standins/ and the tag the builds or the stack use."""

    dockerfile: str
    tag: str
    upstream: str


# The project's Dockerfiles take PYTHON_IMAGE and NODE_IMAGE; stack.yml names Mosquitto's image itself, so
# its stand-in carries that very tag.
STANDINS = (
    StandIn("python.Dockerfile", "local/python:3.11-bookworm", "python:3.11.13-slim-bookworm"),
    StandIn("node.Dockerfile", "local/node:bookworm", "node:22.12.0-bookworm-slim"),
    StandIn("mosquitto.Dockerfile", "eclipse-mosquitto:2.0.22", "eclipse-mosquitto:2.0.22"),
)
BUILD_ARGS = {"PYTHON_IMAGE": STANDINS[0].tag, "NODE_IMAGE": STANDINS[1].tag}


def _source_entries(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) of the `deb` entries of a one-line `.list` or a deb822 `.sources` text."""
    entries = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]]))
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
            if value
        )
        if "deb" in fields.get("types", "").split() and "uris" in fields:
            entries.append((fields["uris"].split()[0], fields.get("suites", "").split()))
    return entries


def apt_mirror(suite: str = SUITE, sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The Debian mirror this machine's apt uses for `suite` (plain HTTP preferred: the base has no CA yet)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files.extend(sorted(p for p in source.iterdir() if p.suffix in (".list", ".sources")))
        elif source.is_file():
            files.append(source)
    found = [uri for f in files for uri, suites in _source_entries(f.read_text()) if suite in suites]
    if not found:
        raise DockerError(f"no apt source for {suite} in {', '.join(map(str, sources))}: cannot debootstrap a base")
    return next((uri for uri in found if uri.startswith("http://")), found[0])


def host_extra_ca(directory: Path = LOCAL_CA_DIR) -> list[Path]:
    """The CA certificates added to this host beyond the system's roots (e.g. a TLS-intercepting proxy's)."""
    return sorted(directory.rglob("*.crt")) if directory.is_dir() else []


def bundle(certificates: list[Path], into: Path) -> Path:
    """One PEM file of the certificates (the build secret `extra_ca`)."""
    into.write_text("".join(c.read_text().rstrip("\n") + "\n" for c in certificates))
    return into


def image_exists(docker: Docker, reference: str) -> bool:
    """Whether the engine has an image of that reference."""
    done = docker.query("image", "inspect", "--format", "{{.Id}}", reference, echo=False)
    return done is not None and done.returncode == 0


def make_base(docker: Docker, host: Host, suite: str = SUITE) -> float:
    """debootstrap a minbase Debian from the apt mirror and import it as BASE_IMAGE; return the seconds."""
    started = time.monotonic()
    mirror = apt_mirror(suite)
    with tempfile.TemporaryDirectory(prefix="lab-debootstrap-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        host.run("debootstrap", "--variant=minbase", suite, str(rootfs), mirror)
        # The downloaded packages and lists are of no use in an image.
        host.shell(f"rm -rf {rootfs}/var/cache/apt/archives/*.deb {rootfs}/var/lib/apt/lists/*")
        host.shell(f"tar -C {rootfs} -c . | {docker.executable()} import - {BASE_IMAGE}")
    return time.monotonic() - started


def make_standins(docker: Docker, host: Host) -> dict[str, float]:
    """Make the base and each stand-in that the engine does not have yet; return the seconds of each made."""
    made: dict[str, float] = {}
    if not image_exists(docker, BASE_IMAGE):
        made[BASE_IMAGE] = round(make_base(docker, host), 1)
    else:
        docker.out(f"# {BASE_IMAGE} exists: kept (`docker rmi {BASE_IMAGE}` makes it again)")
    for standin in STANDINS:
        if image_exists(docker, standin.tag):
            docker.out(f"# {standin.tag} exists: kept (stand-in for {standin.upstream})")
            continue
        started = time.monotonic()
        docker.run(
            "build",
            "-f",
            str(STANDINS_DIR / standin.dockerfile),
            "--build-arg",
            f"BASE={BASE_IMAGE}",
            "-t",
            standin.tag,
            str(STANDINS_DIR),
            env={"DOCKER_BUILDKIT": "1"},
            note=f"stand-in for {standin.upstream}",
        )
        made[standin.tag] = round(time.monotonic() - started, 1)
    return made
