"""`lab report RUN...`: print a saved run's KPI table and queueing prediction, redraw its charts, and
compare several runs side by side. pandas and matplotlib are imported by the functions that use them, so
that `lab --help` stays fast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lab.paths import RUNS_DIR

if TYPE_CHECKING:
    import pandas as pd

    from lab.runs import Run


def register(commands: Any) -> None:
    """Add the `report` subcommand to the `lab` parser's subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "report",
        help="print the KPI table of saved runs, redraw their charts, compare them",
        description="Load runs saved by `lab load` or the notebooks (a run id, a unique prefix of one, 'latest', "
        "or a folder), print each run's KPI table and predicted against measured waiting time, redraw its "
        "charts, and with several runs print them side by side.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run ids or folders (none: list the saved runs)")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, metavar="DIR", help="where runs are saved")
    parser.add_argument("--no-charts", dest="charts", action="store_false", help="do not redraw the charts")
    parser.set_defaults(run=run)


def resolve(name: str, root: Path = RUNS_DIR) -> Path:
    """The folder of run `name`: a folder path, 'latest', a run id, or a unique prefix of one."""
    from lab.runs import list_runs

    path = Path(name)
    if path.is_dir():
        return path
    saved = list_runs(root)
    if name == "latest":
        if not saved:
            raise LookupError(f"no runs saved in {root}")
        return saved[-1]
    matches = [p for p in saved if p.name == name] or [p for p in saved if p.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise LookupError(f"no run {name!r} in {root} (`lab report` lists them)")
    raise LookupError(f"{name!r} matches {len(matches)} runs: " + ", ".join(p.name for p in matches))


def kpi_table_text(table: pd.DataFrame, title: str) -> str:
    """The compact KPI table as plain aligned text: a title line, then KPI, value with its unit, target and
    verdict (``n/a: why`` where a KPI does not apply), one line each."""
    from lab.analysis.display import COMPACT_HEADERS, compact_rows

    rows = [COMPACT_HEADERS, *compact_rows(table)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COMPACT_HEADERS) - 1)]
    lines = [title]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return "\n".join(lines) + "\n"


def print_kpi_table(table: pd.DataFrame, title: str, file: TextIO | None = None) -> None:
    """Print the compact KPI table: a `rich` table on a terminal, plain aligned text otherwise (a pipe, a file,
    a notebook). The long explanations are in the run's kpi.md."""
    out = sys.stdout if file is None else file
    if not out.isatty():
        out.write(kpi_table_text(table, title))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lab.analysis.display import COMPACT_HEADERS, compact_rows

    styles = {"pass": "green", "FAIL": "bold red", "n/a": "yellow"}
    rich_table = Table(title=Text(title), title_justify="left")
    for header in COMPACT_HEADERS:
        rich_table.add_column(header, justify="right" if header == "Value" else "left", overflow="fold")
    for row, verdict in zip(compact_rows(table), table["verdict"], strict=True):
        # Text, not markup: a note or a target may hold brackets.
        rich_table.add_row(*(Text(cell) for cell in row[:-1]), Text(row[-1], style=styles.get(str(verdict), "")))
    Console(file=out).print(rich_table)


def prediction_text(run: Run) -> str:
    """Predicted (M/M/c, M/G/c) against measured mean wait for an open-loop run, or why there is none."""
    from lab.charts import wait_prediction

    try:
        p = wait_prediction(run)
    except ValueError as exc:
        return f"no queueing prediction: {exc}"
    from lab.analysis.display import ms_text

    def ms(key: str) -> str:
        return ms_text(1000 * p[key])

    return (
        f"utilization {100 * p['utilization']:.1f}% of {run.workers} workers, service mean {ms('service_mean_s')} "
        f"(cv² {p['service_cv2']:.3f}); mean wait in queue: measured {ms('measured_mean_wait_s')}, "
        f"M/M/c {ms('mmc_mean_wait_s')}, M/G/c {ms('mgc_mean_wait_s')}"
    )


def steady_text(run: Run) -> str:
    """The run's steady-state verdict and its warm-up-trimmed mean wait with its 95% interval against the
    M/G/c prediction (``lab.analysis.steady``), or why there is none."""
    from lab.analysis import steady

    try:
        state = steady.assess_tasks(run.tasks, run.workers)
    except ValueError as exc:
        return f"no steady-state figures: {exc}"
    row = state.row()
    return (
        f"steady state: {state.verdict}; realized utilization {row['utilization_pct']}%, mean wait after "
        f"{state.trimmed} warm-up tasks {row['measured_ms']} ms (95% interval {row['ci_low_ms']}-{row['ci_high_ms']} "
        f"ms) against M/G/c {row['predicted_ms']} ms: {row['agrees']}"
    )


def print_report(run: Run) -> None:
    """The compact KPI table of a run (``print_kpi_table``), its load summary and the queueing prediction, on
    stdout; how each KPI was measured is in the run's kpi.md."""
    print_kpi_table(run.kpis(), f"KPIs of run {run.run_id} (how each was measured: its kpi.md)")
    load = run.params.get("load")
    if isinstance(load, dict):
        print(
            f"load: {load.get('sent')} sent, {load.get('answered')} answered, {load.get('unanswered')} unanswered, "
            f"{load.get('duplicates')} duplicates; send lag p99 {load.get('send_lag_ms_p99')} ms"
        )
    for fault in run.params.get("faults", []):
        print(f"fault at {fault.get('at_s')} s: {fault.get('action')} {fault.get('target')} {fault.get('error', '')}")
    print(prediction_text(run))
    print(steady_text(run))


def run(args: argparse.Namespace) -> int:
    """Report the named runs (or list them); 2 when a run cannot be found."""
    import pandas as pd

    from lab.charts import save_charts
    from lab.runs import CHARTS_DIR, KPI_FILE, Run, compare, kpi_markdown, list_runs

    if not args.runs:
        saved = list_runs(args.runs_dir)
        print("\n".join(p.name for p in saved) if saved else f"no runs saved in {args.runs_dir}")
        return 0
    try:
        runs = [Run.load(resolve(name, args.runs_dir)) for name in args.runs]
        folders = [resolve(name, args.runs_dir) for name in args.runs]
    except (LookupError, OSError, ValueError) as exc:
        print(f"lab report: {exc}", file=sys.stderr)
        return 2
    for one, folder in zip(runs, folders, strict=True):
        print_report(one)
        (folder / KPI_FILE).write_text(kpi_markdown(one.kpis(), title=f"KPIs of run {one.run_id}"))
        if args.charts:
            written = save_charts(one, folder / CHARTS_DIR)
            print(f"charts: {', '.join(str(p) for p in written)}\n")
    if len(runs) > 1:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            digits = {"throughput_per_min": 1, "p50_ms": 0, "p95_ms": 0, "utilization_pct": 1}
            print(compare(runs).round(digits).to_string(index=False))
    return 0
