"""Whether the notebook's kernel is running a cell, as the chat panel needs to know.

Widget events (a click on Send, Enter in the text box) reach the kernel as messages that it handles between
cells: while a cell runs they wait, and run, in order, once it is done (during "Run All", once the last cell
is). The panel cannot show anything while it waits, so it says beforehand, when a cell starts, that what is
sent now goes when the kernel is free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["CellActivity"]


def _shell() -> Any:
    """The running IPython shell, or None outside IPython (a plain process, a test)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets brings IPython
        return None
    return get_ipython()


class CellActivity:
    """Calls `on_change(True)` when IPython starts running a cell and `on_change(False)` when it finished;
    outside IPython it never calls. `close()` stops it."""

    def __init__(self, on_change: Callable[[bool], None], shell: Any = None) -> None:
        self._on_change = on_change
        self._shell = shell if shell is not None else _shell()
        if self._shell is not None:
            self._shell.events.register("pre_run_cell", self._started)
            self._shell.events.register("post_run_cell", self._finished)

    @property
    def in_ipython(self) -> bool:
        """True when there is a kernel whose cells it follows."""
        return self._shell is not None

    def close(self) -> None:
        """Stop following the cells (safe to call again)."""
        if self._shell is None:
            return
        for event, callback in (("pre_run_cell", self._started), ("post_run_cell", self._finished)):
            with contextlib.suppress(ValueError):  # already unregistered
                self._shell.events.unregister(event, callback)
        self._shell = None

    def _started(self, info: object) -> None:
        self._on_change(True)

    def _finished(self, result: object) -> None:
        self._on_change(False)
