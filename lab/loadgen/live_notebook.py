"""Live stats in Jupyter: a widget with the numbers of the terminal's table and a chart of the run so far,
both replaced every few seconds while the load runs.

The chart is a PNG drawn with matplotlib's Agg canvas (no pyplot, so nothing reaches the notebook's inline
backend) into an ipywidgets.Image: setting a widget's value is safe from the monitor's thread, and a run
executed by papermill, with no browser, just records the widget."""

from __future__ import annotations

import html
import io
import threading
from collections.abc import Sequence
from typing import Any

from lab.loadgen.live import LiveSnapshot
from lab.loadgen.live_text import COLUMNS, cells, heading, plain_line, scaling_note

__all__ = ["NotebookView", "chart_png", "html_table"]

NOTEBOOK_EVERY_S = 2.0


def html_table(s: LiveSnapshot) -> str:
    """The snapshot as a small HTML table with the run's progress as its caption."""
    values = cells(s)
    head = "".join(f"<th style='text-align:right;padding:0 8px'>{html.escape(c)}</th>" for c in COLUMNS)
    row = "".join(f"<td style='text-align:right;padding:0 8px'>{html.escape(values[c])}</td>" for c in COLUMNS)
    caption = html.escape(heading(s))
    note = html.escape(
        f"recent: last {s.recent_window_s:g} s · latency so far · queue, workers: the master's /api/status"
        + (f" · {scaling_note(s)}" if s.scaling else "")
    )
    return (
        f"<table><caption style='text-align:left;font-weight:bold'>{caption}</caption>"
        f"<tr>{head}</tr><tr>{row}</tr></table><div style='color:#666;font-size:smaller'>{note}</div>"
    )


def chart_png(history: Sequence[LiveSnapshot], dpi: int = 80) -> bytes:
    """Answer rates, questions in flight and queued, and latency percentiles against the run's seconds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 3.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    rates, load, latency = figure.subplots(1, 3)
    t = [s.elapsed_s for s in history]
    window = history[-1].recent_window_s if history else 0
    rates.plot(t, [s.recent_per_s for s in history], label=f"last {window:g} s")
    rates.plot(t, [s.overall_per_s for s in history], label="overall", linestyle="--")
    rates.set_title("answers per second")
    load.plot(t, [s.in_flight for s in history], label="in flight")
    load.plot(t, [s.queue if s.queue is not None else float("nan") for s in history], label="queue")
    load.plot(t, [s.failed for s in history], label="failed", color="tab:red")
    if any(s.workers is not None for s in history):
        load.step(t, [float("nan") if s.workers is None else s.workers for s in history], where="post", label="workers")
    if any(s.scaling is not None for s in history):  # the autoscaler's decisions on the timeline
        targets = [float("nan") if s.scaling is None else s.scaling.target for s in history]
        load.step(t, targets, where="post", label="autoscaler target", linestyle=":", color="tab:green")
    load.set_title("questions")
    for name in ("p50", "p95", "p99"):
        values = [getattr(s, f"{name}_s") for s in history]
        latency.plot(t, [float("nan") if v is None else v for v in values], label=name)
    latency.set_title("latency so far (s)")
    for axes in (rates, load, latency):
        axes.set_xlabel("seconds")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


class NotebookView:
    """An ipywidgets box (table and chart), shown in the cell that runs the load when it is made."""

    every_s = NOTEBOOK_EVERY_S

    def __init__(self, show: bool = True) -> None:
        import ipywidgets as widgets

        self.history: list[LiveSnapshot] = []
        self.png = b""
        self.table: Any = widgets.HTML(value="<i>connecting the users…</i>")
        self.chart: Any = widgets.Image(format="png")
        self.widget: Any = widgets.VBox([self.table, self.chart])
        self._lock = threading.Lock()
        if show:
            # Here, in the thread that runs the cell: output displayed from another thread can land elsewhere.
            from IPython.display import display

            display(self.widget)  # type: ignore[no-untyped-call]

    def update(self, snapshot: LiveSnapshot) -> None:
        """Show `snapshot`, and redraw the chart with it."""
        with self._lock:
            self.history.append(snapshot)
            self.table.value = html_table(snapshot)
            self.png = chart_png(self.history)
            self.chart.value = self.png

    def close(self) -> None:
        """Print the last numbers as text too: a saved notebook keeps text, not the widget's state."""
        with self._lock:
            if self.history:
                print(plain_line(self.history[-1]), flush=True)
