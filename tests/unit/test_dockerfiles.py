"""The images' Dockerfiles and build context, checked without a Docker daemon: pinned bases, a non-root user,
health checks, exec-form entry points, the builder installing the service's pyproject extra, and a replay of the COPY
steps through .dockerignore."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from services.master.app import CLIENT_JS

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("master", "worker")


# -- reading a Dockerfile ------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the rest, continuation lines joined


@dataclass
class Stage:
    base: str  # with the global ARGs' defaults filled in
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)
    written: str = ""  # the base as written, e.g. ${PYTHON_IMAGE}

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"the stage FROM {self.base} has no {keyword}"
        return found[-1]


def logical_lines(path: Path) -> list[str]:
    """A Dockerfile's instructions, as Docker reads it: comments dropped, `\\` continues a line."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: the last line continues into nothing"
    return logical


def global_args(path: Path) -> dict[str, str]:
    """The ARGs before the first FROM (the only ones a FROM can use) and their defaults."""
    found = {}
    for text in logical_lines(path):
        keyword, _, args = text.strip().partition(" ")
        if keyword.upper() == "FROM":
            break
        assert keyword.upper() == "ARG", f"{path}: {keyword} before the first FROM"
        name, _, default = args.strip().partition("=")
        found[name] = default
    return found


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each base with its build argument's default filled in."""
    defaults = global_args(path)
    stages: list[Stage] = []
    for text in logical_lines(path)[len(defaults) :]:
        keyword, _, args = text.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], words[0])
            stages.append(Stage(base, name, written=words[0]))
        else:
            assert stages, f"{path}: {keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def flags_and_words(args: str) -> tuple[dict[str, str], list[str]]:
    """Split `--flag=value ... word ...` (a JSON array for the words is read as such)."""
    words = shlex.split(args) if not args.lstrip().startswith("[") else []
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    if args.lstrip().startswith("["):
        words = json.loads(args)
    return flags, words


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction; fails on the shell form."""
    try:
        value = json.loads(args)
    except ValueError:
        raise AssertionError(f"not in exec form (a JSON array): {args}") from None
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dockerfile(service: str) -> list[Stage]:
    return parse_dockerfile(REPO / "services" / service / "Dockerfile")


def pip_install(stages: list[Stage]) -> tuple[Stage, list[str]]:
    """The stage with the `pip install ...` and that command's words."""
    for stage in stages:
        for run in stage.all("RUN"):
            for command in run.args.split("&&"):
                words = shlex.split(command)
                if "pip" in " ".join(words[:2]) and "install" in words:
                    return stage, words
    raise AssertionError("no `pip install ...` in the Dockerfile")


# -- the build context: .dockerignore as Docker applies it -----------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    regex: re.Pattern[str]
    text: str
    exclusion: bool  # a `!` pattern: lets back in


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern language (moby/patternmatcher): `*` and `?` stay within a path segment, `**` spans."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def read_dockerignore() -> list[IgnorePattern]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        exclusion = text.startswith("!")
        text = str(PurePosixPath(text.lstrip("!").strip())).lstrip("/")
        patterns.append(IgnorePattern(ignore_regex(text), text, exclusion))
    return patterns


def is_ignored(path: str, patterns: list[IgnorePattern]) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the context: the last pattern that matches it or
    one of its parent directories decides."""
    parents = path.split("/")[:-1]
    ignored = False
    for p in patterns:
        if p.exclusion != ignored:
            continue  # this pattern cannot change the answer
        hit = bool(p.regex.match(path)) or any(p.regex.match("/".join(parents[: i + 1])) for i in range(len(parents)))
        if hit:
            ignored = not p.exclusion
    return ignored


def context_files(root: Path, patterns: list[IgnorePattern]) -> list[str]:
    """The files Docker sends as the build context of `root`, walking as it does (an ignored directory is
    entered only when a `!` pattern may let something inside it back in)."""
    found: list[str] = []

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                if is_ignored(rel, patterns) and not any(
                    p.exclusion and (p.text + "/").startswith(rel + "/") for p in patterns
                ):
                    continue
                walk(entry)
            elif not is_ignored(rel, patterns):
                found.append(rel)

    walk(root)
    return found


@pytest.fixture(scope="module")
def context() -> list[str]:
    return context_files(REPO, read_dockerignore())


# -- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_base_image_is_pinned_to_an_exact_version(service: str) -> None:
    stages = dockerfile(service)
    names = {s.name for s in stages}
    for stage in stages:
        if stage.base in names:
            continue  # FROM an earlier stage
        image, _, tag = stage.base.partition("@")[0].rpartition(":")
        assert image and "/" not in tag, f"{stage.base}: no tag"
        assert tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), f"{stage.base}: not an exact version"


@pytest.mark.parametrize("service", SERVICES)
def test_base_images_are_build_arguments_defaulting_to_the_pinned_upstream_images(service: str) -> None:
    path = REPO / "services" / service / "Dockerfile"
    wanted = {"PYTHON_IMAGE": "python:3.11.13-slim-bookworm", "NODE_IMAGE": "node:22.12.0-bookworm-slim"}
    used = {s.written for s in parse_dockerfile(path) if s.written not in {x.name for x in parse_dockerfile(path)}}
    assert used <= {"${PYTHON_IMAGE}", "${NODE_IMAGE}"}, f"a base is not a build argument: {used}"
    assert global_args(path) == {k: v for k, v in wanted.items() if f"${{{k}}}" in used}
    # A `# syntax=` line would pull a Dockerfile frontend image at build time (Docker Hub): none.
    assert not path.read_text().startswith("# syntax")


@pytest.mark.parametrize("service", SERVICES)
def test_the_extra_ca_is_an_optional_build_secret_of_every_download(service: str) -> None:
    """pip and npm trust an extra CA when the build is given one (--secret id=extra_ca), and it is in no layer."""
    runs = [r.args for stage in dockerfile(service) for r in stage.all("RUN")]
    downloads = [r for r in runs if "pip install" in r or "npm ci" in r]
    assert downloads
    for run in downloads:
        assert run.startswith("--mount=type=secret,id=extra_ca,required=false "), run
        if "pip install" in run:
            # PIP_CERT replaces pip's roots: the bundle is certifi's roots plus the extra CA, removed afterwards.
            assert "c.where()" in run and "/run/secrets/extra_ca" in run and "PIP_CERT=/tmp/ca-bundle.pem" in run
            assert run.rstrip().endswith("rm -f /tmp/ca-bundle.pem")
        else:
            assert "NODE_EXTRA_CA_CERTS=/run/secrets/extra_ca" in run
    for stage in dockerfile(service):
        for copy in stage.all("COPY") + stage.all("ADD"):
            assert not any(w.endswith((".crt", ".pem")) for w in flags_and_words(copy.args)[1]), copy.args


def test_the_stand_in_images_are_what_the_builds_and_the_stack_use() -> None:
    from lab.swarm.standins import BUILD_ARGS, STANDINS, STANDINS_DIR

    for standin in STANDINS:
        path = STANDINS_DIR / standin.dockerfile
        assert global_args(path) == {"BASE": "local/debian:bookworm"}
        assert [s.written for s in parse_dockerfile(path)] == ["${BASE}"]
    stack = (REPO / "stack.yml").read_text()
    assert f"image: {STANDINS[2].tag}" in stack  # Mosquitto's stand-in carries the stack's own tag
    assert {"PYTHON_IMAGE": STANDINS[0].tag, "NODE_IMAGE": STANDINS[1].tag} == BUILD_ARGS


@pytest.mark.parametrize("service", SERVICES)
def test_image_runs_as_a_fixed_non_root_user(service: str) -> None:
    final = dockerfile(service)[-1]
    user = final.last("USER").args
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {user}: want a fixed numeric non-root uid"
    assert f"--uid {uid}" in " ".join(r.args for r in final.all("RUN")), "the user is not created with that uid"


@pytest.mark.parametrize("service", SERVICES)
def test_image_health_check_runs_the_services_check(service: str) -> None:
    check = dockerfile(service)[-1].last("HEALTHCHECK").args
    flags, _ = flags_and_words(check.split(" CMD ")[0])
    assert check.split(" CMD ", 1)[1:], f"HEALTHCHECK without CMD: {check}"
    assert exec_form(check.split(" CMD ", 1)[1]) == ["python", "-m", f"services.{service}", "--check"]
    # Swarm's stack.yml gives the check 5 s; the image's own timeout should not be longer.
    assert flags.get("timeout") == "5s"


@pytest.mark.parametrize("service", SERVICES)
def test_image_starts_the_service_in_exec_form(service: str) -> None:
    final = dockerfile(service)[-1]
    assert exec_form(final.last("ENTRYPOINT").args) == ["python", "-m", f"services.{service}"]
    for cmd in final.all("CMD"):
        exec_form(cmd.args)  # a shell-form CMD would run under /bin/sh and swallow SIGTERM
    env = " ".join(e.args for e in final.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env and "PYTHONUNBUFFERED=1" in env


@pytest.mark.parametrize("service", SERVICES)
def test_every_copied_file_is_in_the_build_context(service: str, context: list[str]) -> None:
    for stage in dockerfile(service):
        for copy in stage.all("COPY") + stage.all("ADD"):
            flags, words = flags_and_words(copy.args)
            if "from" in flags:
                continue
            for source in words[:-1]:
                path = REPO / source
                assert path.exists(), f"COPY {source}: no such file in the repository"
                rel = path.relative_to(REPO).as_posix()
                inside = [f for f in context if f == rel or f.startswith(rel.rstrip("/") + "/")]
                assert inside, f"COPY {source}: .dockerignore leaves it out of the build context"


def test_build_context_leaves_out_what_no_image_needs(context: list[str]) -> None:
    assert "constraints.txt" in context and "services/master/app.py" in context
    assert "services/protocol/gen/worker_pb2.py" in context  # the committed stubs: no protoc in the build
    for unwanted in (".git/", ".venv/", "tests/", "notebooks/", "data/", "lab/", "node_modules/", "__pycache__/"):
        assert not any(f.startswith(unwanted) or f"/{unwanted}" in f for f in context), unwanted
    assert not any(f.endswith(".pyc") or f.endswith("Dockerfile") for f in context)


def test_dockerignore_reads_like_docker() -> None:
    patterns = [IgnorePattern(ignore_regex(t), t, False) for t in ("*", "**/__pycache__", "a/**/b")]
    patterns.insert(1, IgnorePattern(ignore_regex("services"), "services", True))
    assert is_ignored("README.md", patterns) and is_ignored(".venv/bin/python", patterns)
    assert not is_ignored("services/master/app.py", patterns)
    assert is_ignored("services/master/__pycache__/app.cpython-311.pyc", patterns)
    assert ignore_regex("a/**/b").match("a/b") and ignore_regex("a/**/b").match("a/x/y/b")
    assert not ignore_regex("a/*").match("a/x/y")


def test_master_image_serves_the_socketio_client_where_app_looks_for_it() -> None:
    stages = dockerfile("master")
    final, by_name = stages[-1], {s.name: s for s in stages}
    assert final.last("WORKDIR").args == "/app" and "PYTHONPATH=/app" in " ".join(e.args for e in final.all("ENV"))
    wanted = PurePosixPath("/app") / CLIENT_JS.relative_to(REPO).as_posix()
    copies = [flags_and_words(c.args) for c in final.all("COPY")]
    client = [(flags["from"], words) for flags, words in copies if "from" in flags and words[-1].endswith(".js")]
    assert client, "the final stage copies no socket.io client"
    stage_name, (source, dest) = client[0][0], client[0][1]
    assert PurePosixPath("/app", dest) == wanted
    web = by_name[stage_name]
    workdir = PurePosixPath(web.last("WORKDIR").args)
    assert PurePosixPath(source) == workdir / "node_modules/socket.io-client/dist/socket.io.min.js"
    assert any("npm ci" in r.args and "--omit=dev" in r.args for r in web.all("RUN"))
    package_copy = flags_and_words(web.last("COPY").args)[1]
    assert {"services/web/package.json", "services/web/package-lock.json"} <= set(package_copy)


def test_master_image_gives_the_journal_directory_to_its_user() -> None:
    final = dockerfile("master")[-1]
    uid = final.last("USER").args.split(":")[0]
    runs = " ".join(r.args for r in final.all("RUN"))
    assert "mkdir /data" in runs and f"chown {uid}:{uid} /data" in runs
    assert "JOURNAL_PATH=/data/journal.sqlite3" in " ".join(e.args for e in final.all("ENV"))
    assert final.last("EXPOSE").args.split() == ["8888", "50051"]


@pytest.mark.parametrize("service", SERVICES)
def test_builder_installs_the_services_extra_at_the_pinned_versions(service: str) -> None:
    stages = dockerfile(service)
    stage, words = pip_install(stages)
    assert stage is not stages[-1], "pip installs in the final stage: the image would carry pip's leftovers"
    options: dict[str, str] = {}
    targets: list[str] = []
    args = iter(words[words.index("install") + 1 :])
    for word in args:
        if word.startswith("--") and "=" in word:
            key, _, value = word.partition("=")
            options[key] = value
        elif word in ("-c", "--constraint"):
            options["-c"] = next(args)
        elif not word.startswith("-"):
            targets.append(word)
    # The project's directory with the service's extra: pyproject.toml is the one list of its packages.
    assert len(targets) == 1 and targets[0].endswith(f"[{service}]"), f"pip installs {targets}, not [{service}]"
    project = PurePosixPath(targets[0].removesuffix(f"[{service}]"))
    assert options.get("--only-binary") == ":all:"
    assert PurePosixPath(options.get("-c", "")) == project / "constraints.txt"
    copied = [flags_and_words(c.args)[1] for c in stage.all("COPY")]
    into_project = {
        PurePosixPath(s).name for *sources, dest in copied if PurePosixPath(dest) == project for s in sources
    }
    assert {"pyproject.toml", "constraints.txt", "README.md"} <= into_project
    extras = re.findall(r"^([a-z]+) = \[", (REPO / "pyproject.toml").read_text(), re.M)
    assert service in extras, f"pyproject.toml has no [{service}] extra"
    # The project itself is removed again: the image runs its source from /app.
    assert "pip uninstall -y swarm-ai-lab" in " ".join(r.args for r in stage.all("RUN"))


def replay_copies(service: str, context: list[str], root: Path) -> Path:
    """Copy into `root` what the final stage's COPY steps take from the build context; return its WORKDIR."""
    final = dockerfile(service)[-1]
    workdir = PurePosixPath("/")
    for instruction in final.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.args
        if instruction.keyword != "COPY":
            continue
        flags, words = flags_and_words(instruction.args)
        if "from" in flags:
            continue
        *sources, dest = words
        target = PurePosixPath(workdir, dest)
        for source in sources:
            rel = source.rstrip("/")
            for f in context:
                if f == rel:
                    out = target / PurePosixPath(f).name if dest.endswith("/") else target
                elif f.startswith(rel + "/"):
                    out = target / f[len(rel) + 1 :]
                else:
                    continue
                destination = root / str(out).lstrip("/")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, destination)
    return root / str(workdir).lstrip("/")


@pytest.mark.parametrize("service", SERVICES)
def test_copied_source_imports_and_answers_check(service: str, context: list[str], tmp_path: Path) -> None:
    app = replay_copies(service, context, tmp_path)
    assert (app / "services" / service / "__main__.py").is_file()
    assert not (app / "services" / "web" / "node_modules").exists()
    env = {"PYTHONPATH": str(app), "PATH": "/usr/bin:/bin", "WEB_PORT": "1", "HEALTH_FILE": str(tmp_path / "none")}
    imported = subprocess.run(
        [sys.executable, "-c", f"import services.{service}.__main__ as m; print(m.__file__)"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(str(app))  # the copy, not the repository
    check = subprocess.run(
        [sys.executable, "-m", f"services.{service}", "--check"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1 and check.stderr.startswith("unhealthy: "), check
