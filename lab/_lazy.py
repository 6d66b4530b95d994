"""Package attributes imported on first use (PEP 562).

A subpackage's ``__init__`` names its public API without importing it, so that importing one light module
of a package (``lab.analysis.stats``) does not import its heavy siblings (pandas for ``lab.analysis.kpi``).
This is what lets the ``lab`` command build its parser without pandas, matplotlib or Socket.IO.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from submodule ``where[name]``."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            # Also how `from package import submodule` falls back to importing the submodule.
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
