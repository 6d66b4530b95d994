"""The lab package's shape: the `lab` command starts without its heavy dependencies, modules stay small,
and the keyword form of `LocalCluster` names exactly the fields of `ClusterSpec`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from lab.system.spec import ClusterOptions, ClusterSpec

LAB = Path(__file__).resolve().parents[2] / "lab"
MAX_LINES = 400
# What a command imports when it runs, never to build the parser (each costs 0.05-0.5 s at start).
HEAVY = ("pandas", "matplotlib", "numpy", "socketio", "grpc", "paho", "google.genai", "httpx", "celery", "redis")


def test_building_the_lab_parser_imports_none_of_the_heavy_dependencies() -> None:
    script = (
        "import sys\n"
        "from lab.cli import build_parser\n"
        "build_parser().parse_args(['up', '--workers', '1'])\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_no_lab_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(LAB)): len(p.read_text().splitlines()) for p in LAB.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_cluster_options_name_the_fields_of_cluster_spec() -> None:
    assert set(ClusterOptions.__annotations__) == {f.name for f in dataclasses.fields(ClusterSpec)}
