"""The images' Dockerfiles and build context, checked without a Docker daemon: pinned bases, a non-root user,
health checks, exec-form entry points, and a replay of the COPY steps through .dockerignore."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from services.master.app import CLIENT_JS

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("master", "worker")
NAMESPACE = "(a namespace package)"
LAB_ONLY = {"pandas", "matplotlib", "ipywidgets", "tqdm"}


# -- reading a Dockerfile ------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the rest, continuation lines joined


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"the stage FROM {self.base} has no {keyword}"
        return found[-1]


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, as Docker reads it: comments dropped, `\\` continues a line."""
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
    stages: list[Stage] = []
    for text in logical:
        keyword, _, args = text.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
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


def pip_packages(stages: list[Stage]) -> list[str]:
    """The requirements named by the builder's `pip install -c constraints.txt ...`."""
    for stage in stages:
        for run in stage.all("RUN"):
            words = shlex.split(run.args)
            if "pip" in " ".join(words[:2]) and "install" in words and "-c" in words:
                start = words.index("install") + 1
                named, skip = [], False
                for word in words[start:]:
                    if skip:
                        skip = False
                    elif word in ("-c", "--constraint"):
                        skip = True
                    elif not word.startswith("-"):
                        named.append(word)
                return named
    raise AssertionError("no `pip install -c constraints.txt ...` in the builder")


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


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("service", SERVICES)
def test_builder_installs_pinned_runtime_dependencies_only(service: str) -> None:
    named = [normalized(re.split(r"[\[<>=!~ ]", p)[0]) for p in pip_packages(dockerfile(service))]
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    pins = {normalized(line.split("==")[0]) for line in constraints if "==" in line}
    # [project] dependencies = [...] of pyproject.toml (the first `dependencies` list in the file).
    listed = re.search(r"^dependencies = \[(.*?)^\]", (REPO / "pyproject.toml").read_text(), re.M | re.S)
    assert listed, "pyproject.toml has no dependencies list"
    runtime = {normalized(re.split(r"[\[<>=!~ ]", d)[0]) for d in re.findall(r'"([^"]+)"', listed.group(1))}
    assert named and not set(named) - pins, f"not pinned in constraints.txt: {set(named) - pins}"
    assert not set(named) - runtime, f"not runtime dependencies in pyproject.toml: {set(named) - runtime}"
    assert not set(named) & LAB_ONLY


def imported_modules(path: Path) -> set[str]:
    """Modules a file imports, at the top or in functions, except optional ones (`try: ... except ImportError`)
    and those only for the type checker."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            optional = any(h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers)
            if optional:
                skipped.update(id(n) for child in node.body for n in ast.walk(child))
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m and m != "__future__"}


def module_file(name: str) -> Path | None:
    """The source file of one of our modules, or None for anything else."""
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(entry: str) -> set[str]:
    """The modules outside the repository and the standard library that `entry` reaches through our code."""
    seen: set[str] = set()
    todo, outside = [entry], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        source = module_file(name)
        if source is not None:
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
            todo.extend(imported_modules(source))
        elif parts[0] not in sys.stdlib_module_names and module_file(parts[0]) is None:
            outside.add(name)
    return outside


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides `module` (or its nearest importable parent)."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:i]))
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin is None and spec.submodule_search_locations is not None:
            return NAMESPACE  # e.g. `google`, shared by several distributions
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            return owner_of(Path(spec.origin), parts[0])
    return None


@functools.cache
def top_level_owners() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def owner_of(origin: Path, top_level: str) -> str | None:
    """The distribution whose RECORD lists `origin` (among those that provide `top_level`)."""
    entries = [Path(e) for e in sys.path if e and origin.is_relative_to(e)]
    if not entries:
        return None
    relative = origin.relative_to(max(entries, key=lambda e: len(e.parts))).as_posix()  # the innermost entry
    for name in top_level_owners().get(top_level, []):
        if any(str(f) == relative for f in importlib.metadata.distribution(name).files or ()):
            return normalized(name)
    return None


@pytest.mark.parametrize("service", SERVICES)
def test_builder_installs_every_package_the_service_imports(service: str) -> None:
    named = {normalized(re.split(r"[\[<>=!~ ]", p)[0]) for p in pip_packages(dockerfile(service))}
    imports = third_party_imports(f"services.{service}.__main__")
    assert imports, "found no third-party import at all: the scan is broken"
    providers = {m: distribution_of(m) for m in imports}
    unknown = {m for m, d in providers.items() if d is None}
    assert not unknown, f"imported, but not installed here: {unknown}"
    missing = {m: d for m, d in providers.items() if d not in named and d != NAMESPACE}
    assert not missing, f"services.{service} imports these, but its image does not install them: {missing}"


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
