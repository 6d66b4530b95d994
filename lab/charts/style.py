"""The look the charts share: figure layout, resolution, colours, the target band (in percent), titles that
name the run, integer ticks for counts, legends and the "no data" note.

Figures are made without pyplot, so no global state is touched and they render headless.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from lab.analysis import kpi

DPI = 110
# Fractions are drawn in percent, latencies in ms: the units of the KPI table.
BUSY_LOW, BUSY_HIGH = (100 * x for x in kpi.BUSY_TARGET)
TARGET_COLOUR = "tab:red"
BAND_COLOUR = "tab:green"


def new_figure(rows: int = 1, height: float = 4.5, ratios: Sequence[float] | None = None) -> tuple[Figure, list[Axes]]:
    """A figure of ``rows`` axes stacked on one shared x axis, with ``ratios`` as their relative heights."""
    figure = Figure(figsize=(9, height), layout="constrained")
    spec = figure.add_gridspec(rows, 1, height_ratios=ratios)
    axes = [figure.add_subplot(spec[i, 0]) for i in range(rows)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    return figure, axes


def no_data(ax: Axes, note: str = "no data") -> None:
    """Write ``note`` in grey across the middle of ``ax``."""
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="grey", fontsize=14)


def legend(ax: Axes) -> None:
    """A legend on ``ax`` when it has more than one labelled artist."""
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(loc="best", fontsize="small")


def titled(ax: Axes, title: str, run: str | None) -> None:
    """``title`` on the left of ``ax``, and the run (or runs) it shows on the right, small and grey."""
    ax.set_title(title, loc="left")
    if run:
        ax.set_title(run, loc="right", fontsize="small", color="dimgrey")


def run_name(run_id: str | None) -> str | None:
    """``"run <id>"`` for a chart's title, None without an id."""
    return f"run {run_id}" if run_id else None


def runs_name(run_ids: Sequence[str]) -> str | None:
    """The runs a chart across runs shows: ``"run a"``, ``"runs a, b"``, or ``"5 runs: a ... e"``."""
    ids = list(dict.fromkeys(run_ids))
    if len(ids) <= 2:
        return ("run " if len(ids) == 1 else "runs ") + ", ".join(ids) if ids else None
    return f"{len(ids)} runs: {ids[0]} ... {ids[-1]}"


def integer_ticks(axis: Axis) -> None:
    """Ticks only at whole numbers on ``axis`` (counts of tasks or workers)."""
    axis.set_major_locator(MaxNLocator(integer=True))


def percent_ticks(axis: Axis) -> None:
    """``"75%"`` tick labels on ``axis``, whose values are percentages (0-100)."""
    axis.set_major_formatter(PercentFormatter(100))
