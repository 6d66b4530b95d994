"""The repository's folders the lab reads and writes, defined once."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BENCH_DIR", "CORPUS", "DATA_DIR", "REPO_ROOT", "RUNS_DIR"]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout: the working directory of every process the lab starts."""
DATA_DIR = REPO_ROOT / "data"
RUNS_DIR = DATA_DIR / "runs"
"""Saved experiment runs, one folder each (lab.runs)."""
BENCH_DIR = DATA_DIR / "bench"
"""Benchmark figures (JSON) and charts (PNG) (lab.bench)."""
CORPUS = DATA_DIR / "questions.txt"
"""The questions the load generator asks in turn."""
