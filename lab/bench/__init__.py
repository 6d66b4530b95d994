"""Benchmarks of the system (``lab bench NAME``), one module each, with what they share: the simulated workers
and the echo master they measure against, the Celery peer they compare with, and the load generator's own
limit. Figures go to data/bench/ (see data/README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab._lazy import lazy_exports

if TYPE_CHECKING:
    from lab.bench.files import file_stem, record, save
    from lab.bench.suite import BENCHMARKS, Benchmark

__all__ = ["BENCHMARKS", "Benchmark", "file_stem", "record", "save"]

__getattr__ = lazy_exports(
    __name__,
    {"BENCHMARKS": "suite", "Benchmark": "suite", "file_stem": "files", "record": "files", "save": "files"},
)
