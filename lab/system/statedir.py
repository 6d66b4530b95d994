"""The temporary directory of a local cluster (broker files, journal), and sweeping those of dead labs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "lab-cluster-"
OWNER_FILE = "lab.pid"


def _alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


def sweep_orphans(root: Path | None = None) -> list[Path]:
    """Remove this user's cluster directories whose lab is gone (a SIGKILLed lab cannot clean up; its
    directory holds a journal of users' questions); return them."""
    root = Path(tempfile.gettempdir()) if root is None else root
    removed = []
    for path in root.glob(f"{PREFIX}*"):
        try:
            if path.stat().st_uid != os.geteuid():
                continue
            pid = int((path / OWNER_FILE).read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue  # not one of ours, or still being made
        if not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_temp_state_dir(root: Path | None = None) -> Path:
    """A new private directory for one cluster, marked with this process's id; sweeps orphans first."""
    sweep_orphans(root)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    (path / OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")
    return path


def open_state_dir(given: Path | None) -> Path:
    """`given` (created if missing, private), or else a new temporary state directory."""
    if given is None:
        return make_temp_state_dir()
    given.mkdir(mode=0o700, parents=True, exist_ok=True)
    return given


def close_state_dir(path: Path | None, given: Path | None) -> None:
    """Delete the state directory `path` if the lab made it (`given` is None); a given one is kept for inspection."""
    if path is not None and given is None:
        shutil.rmtree(path, ignore_errors=True)
