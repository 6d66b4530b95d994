"""What a measurement ran on: the machine, and for a run also the git commit and when."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from typing import Any

from lab.paths import REPO_ROOT

__all__ = ["capture_environment", "machine"]


def machine() -> dict[str, Any]:
    """What figures were measured on: CPUs, Python version and platform."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def capture_environment() -> dict[str, Any]:
    """``machine()``, the CPU count again as ``cpu_count`` (the name runs were saved with), the git commit
    (None outside a git checkout) and when."""
    try:
        commit: str | None = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        **machine(),
        "cpu_count": os.cpu_count(),
        "git_commit": commit or None,
        "captured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
