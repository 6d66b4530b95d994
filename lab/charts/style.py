"""The look the charts share: figure layout, resolution, colours, the target band, legends and the
"no data" note.

Figures are made without pyplot, so no global state is touched and they render headless.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lab.analysis import kpi

DPI = 110
BUSY_LOW, BUSY_HIGH = kpi.BUSY_TARGET
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
