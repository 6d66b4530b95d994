"""Local stand-ins for the upstream base images where Docker Hub is unreachable: a Debian base made with
`debootstrap --variant=minbase` from this machine's apt mirror and `docker import`, then on it Python, Node.js
and Mosquitto, this host's Go toolchain, a JDK 17 with Maven and a Java 17 runtime (lab/swarm/standins/
*.Dockerfile). Also the host's extra CA certificates, for builds behind a TLS-intercepting proxy."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.paths import REPO_ROOT
from lab.swarm.docker import Docker, DockerError
from lab.swarm.engine import Host

STANDINS_DIR = Path(__file__).resolve().parent / "standins"
BASE_IMAGE = "local/debian:bookworm"
SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# Where Debian keeps the CAs an administrator added (update-ca-certificates reads them from there).
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")


# The host's Go toolchain, when `go` is not on PATH (root's PATH often lacks it).
HOST_GO = Path("/usr/local/go/bin/go")
GO_MOD = REPO_ROOT / "services" / "worker-go" / "go.mod"


def _standins_dir() -> Path:
    return STANDINS_DIR


@dataclass(frozen=True)
class StandIn:
    """A stand-in image: its Dockerfile in lab/swarm/standins/, the tag the builds or the stack use, and the
    directory it is built from (default: lab/swarm/standins; the Go stand-in's is the host's GOROOT)."""

    dockerfile: str
    tag: str
    upstream: str
    context: Callable[[], Path] = _standins_dir


def _go(*args: str) -> str:
    go = shutil.which("go") or (str(HOST_GO) if HOST_GO.is_file() else None)
    if go is None:
        raise DockerError(
            f"no Go toolchain on this host (`go` on PATH, or {HOST_GO}): the Go stand-in is the host's Go "
            "(Debian bookworm's golang 1.19 is too old); install Go, or leave go out of --workers"
        )
    done = subprocess.run([go, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DockerError(f"`{go} {' '.join(args)}` failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def host_goroot(go_mod: Path | None = None) -> Path:
    """The host's GOROOT (the Go stand-in's build context), once its Go is known to be new enough for the Go
    worker's go.mod (default: GO_MOD)."""
    go_mod = go_mod or GO_MOD
    goroot, version = _go("env", "GOROOT", "GOVERSION").splitlines()
    wanted = re.search(r"^go\s+(\S+)", go_mod.read_text(), re.MULTILINE) if go_mod.is_file() else None
    if wanted and _version(version) < _version(wanted.group(1)):
        raise DockerError(
            f"the host's Go is {version}, {go_mod} asks for go {wanted.group(1)}: the Go stand-in copies the "
            "host's toolchain (and the worker's build sets GOTOOLCHAIN=local); install a newer Go"
        )
    return Path(goroot)


# The project's Dockerfiles take PYTHON_IMAGE and NODE_IMAGE, GO_IMAGE, MAVEN_IMAGE and BASE_IMAGE; stack.yml
# names Mosquitto's image itself, so its stand-in carries that very tag. (The order of the first three is
# relied on.)
STANDINS = (
    StandIn("python.Dockerfile", "local/python:3.11-bookworm", "python:3.11.13-slim-bookworm"),
    StandIn("node.Dockerfile", "local/node:bookworm", "node:22.12.0-bookworm-slim"),
    StandIn("mosquitto.Dockerfile", "eclipse-mosquitto:2.0.22", "eclipse-mosquitto:2.0.22"),
    StandIn("golang.Dockerfile", "local/golang:bookworm", "golang:1.26.8-bookworm", context=host_goroot),
    StandIn("maven.Dockerfile", "local/maven:3.8-jdk17-bookworm", "maven:3.8.7-eclipse-temurin-17"),
    StandIn("jre.Dockerfile", "local/jre:17-bookworm", "eclipse-temurin:17-jre"),
)
# The Python images' base images (the master's Dockerfile, the Python worker's and the autoscaler's).
BUILD_ARGS = {"PYTHON_IMAGE": STANDINS[0].tag, "NODE_IMAGE": STANDINS[1].tag}
# Each Dockerfile's own: BASE_IMAGE names the Go worker's runtime (the debootstrap base itself, a minbase
# Debian like debian:bookworm-slim; the Dockerfile installs ca-certificates) and the Java worker's JRE.
IMAGE_BUILD_ARGS: dict[str, dict[str, str]] = {
    "master": BUILD_ARGS,
    "worker": BUILD_ARGS,
    "worker-go": {"GO_IMAGE": STANDINS[3].tag, "BASE_IMAGE": BASE_IMAGE},
    "worker-java": {"MAVEN_IMAGE": STANDINS[4].tag, "BASE_IMAGE": STANDINS[5].tag},
    "autoscaler": BUILD_ARGS,
    # stack.ha.yml's HAProxy and etcd: Debian's packages on the minbase Debian itself.
    "proxy": {"BASE_IMAGE": BASE_IMAGE},
    "etcd": {"BASE_IMAGE": BASE_IMAGE},
}


def standins_for(
    images: Iterable[str], build_args: Mapping[str, Mapping[str, str]] = IMAGE_BUILD_ARGS
) -> list[StandIn]:
    """The stand-ins that building `images` needs, and those the stack runs itself (Mosquitto's)."""
    used = {tag for args in build_args.values() for tag in args.values()}
    wanted = {tag for name in images for tag in build_args.get(name, {}).values()}
    return [s for s in STANDINS if s.tag in wanted or s.tag not in used]


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


def make_standins(docker: Docker, host: Host, images: Iterable[str] = ("master", "worker")) -> dict[str, float]:
    """Make the base and each stand-in that building `images` needs (and Mosquitto's) that the engine does not
    have yet; return the seconds of each made."""
    made: dict[str, float] = {}
    if not image_exists(docker, BASE_IMAGE):
        made[BASE_IMAGE] = round(make_base(docker, host), 1)
    else:
        docker.out(f"# {BASE_IMAGE} exists: kept (`docker rmi {BASE_IMAGE}` makes it again)")
    for standin in standins_for(images):
        if image_exists(docker, standin.tag):
            docker.out(f"# {standin.tag} exists: kept (stand-in for {standin.upstream}; `docker rmi` makes it again)")
            continue
        context = standin.context()
        started = time.monotonic()
        docker.run(
            "build",
            "-f",
            str(STANDINS_DIR / standin.dockerfile),
            "--build-arg",
            f"BASE={BASE_IMAGE}",
            "-t",
            standin.tag,
            str(context),
            env={"DOCKER_BUILDKIT": "1"},
            note=f"stand-in for {standin.upstream}",
        )
        made[standin.tag] = round(time.monotonic() - started, 1)
    return made
