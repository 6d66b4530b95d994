"""Readable verdicts: values with their units (ms, %), KPIs that do not apply saying why, small runs flagged,
the compact terminal table, and charts that name their run in the units of the KPI table."""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import pandas as pd
import pytest
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from lab import charts
from lab.analysis.display import compact_frame, ms_text, percent_text, prediction_rows, value_text, verdict_text
from lab.analysis.kpi import KPI_NAMES, evaluate
from lab.analysis.stats import percentile
from lab.analysis.verdicts import min_size, tolerated
from lab.commands.report import kpi_table_text, print_kpi_table
from lab.runs import Run, kpi_markdown
from tests.unit.test_kpi import events_frame, half_busy_events, task, tasks_frame

matplotlib.use("Agg")

NORMAL = {"target_utilization": 0.75}


def row(table: pd.DataFrame, kpi: str) -> dict[str, Any]:
    found: dict[str, Any] = table.set_index("kpi").loc[kpi].to_dict()
    return found


def answered(n: int, latency_s: float = 11.0, *, failed: int = 0, slow: int = 0) -> pd.DataFrame:
    """n tasks a second apart: the first `failed` failed, the next `slow` took 20 s, the rest `latency_s`."""
    rows = [
        task(
            f"t{i}",
            i,
            20.0 if failed <= i < failed + slow else latency_s,
            outcome="failed" if i < failed else "answered",
        )
        for i in range(n)
    ]
    return tasks_frame(rows)


# Units


def test_latencies_read_in_milliseconds_grouped_from_five_digits() -> None:
    assert ms_text(23_527.4) == "23 527 ms"
    assert ms_text(15_000) == "15 000 ms"
    assert ms_text(4000) == "4000 ms"
    assert ms_text(11.2) == "11 ms"
    assert ms_text(0.84) == "0.8 ms"
    assert ms_text(float("nan")) == ms_text(None) == "n/a"


def test_fractions_read_in_percent_and_other_units_keep_theirs() -> None:
    assert percent_text(82.18) == "82.2%"
    assert value_text(100.0, "%") == "100.0%"
    assert value_text(28.0, "tasks/min") == "28.0 tasks/min"
    assert value_text(12_625.0, "ms") == "12 625 ms"
    assert value_text(float("nan"), "%") == "n/a"


def test_every_latency_kpi_is_in_ms_and_every_fraction_in_percent() -> None:
    table = evaluate(answered(30), half_busy_events(), workers=2, params=NORMAL)
    units = dict(zip(table["kpi"], table["unit"], strict=True))
    assert units == {
        "availability": "%",
        "throughput": "tasks/min",
        "latency": "ms",
        "utilization": "%",
        "mqtt_latency": "ms",
        "grpc_latency": "ms",
        "overhead": "ms",
        "registration": "ms",
    }
    assert row(table, "utilization")["measured"] == pytest.approx(50.0)
    assert row(table, "latency")["measured"] == pytest.approx(11_000)
    assert row(table, "latency")["target"] == "p95 < 15 000 ms"


def test_a_verdict_reads_with_its_reason() -> None:
    assert verdict_text({"verdict": "pass", "note": ""}) == "pass"
    assert verdict_text({"verdict": "n/a", "note": "offered load 50%"}) == "n/a: offered load 50%"
    assert verdict_text({"verdict": "pass", "note": "small run"}) == "pass, small run"


def test_the_prediction_reads_in_ms_and_percent() -> None:
    rows = prediction_rows({"measured_mean_wait_s": 3.534, "mmc_mean_wait_s": float("nan"), "utilization": 0.896})
    assert rows["mean wait in queue, measured"] == "3534 ms"
    assert rows["mean wait in queue, M/M/c"] == "n/a"
    assert rows["offered utilization"] == "89.6%"


# Which KPIs apply


def test_utilization_applies_only_at_a_normal_offered_load() -> None:
    at_half = row(
        evaluate(answered(30), half_busy_events(), workers=2, params={"target_utilization": 0.5}), "utilization"
    )
    assert at_half["verdict"] == "n/a" and at_half["passed"] is None
    assert at_half["note"].startswith("offered load 50%, not normal")
    unknown = row(evaluate(answered(30), half_busy_events(), workers=2), "utilization")
    assert unknown["verdict"] == "n/a" and "unknown" in unknown["note"]
    judged = row(evaluate(answered(30), half_busy_events(), workers=2, params=NORMAL), "utilization")
    assert judged["verdict"] == "FAIL" and judged["note"] == ""


def test_without_a_target_utilization_the_offered_load_comes_from_the_rate_and_the_service_time() -> None:
    # Each task holds its worker 10.02 s (assigned to finished); 0.15 tasks/s on 2 workers offers 75%.
    table = evaluate(answered(30), half_busy_events(), workers=2, params={"rate_per_s": 0.15})
    assert row(table, "utilization")["verdict"] == "FAIL"  # judged: 50% busy at a normal load


def test_throughput_does_not_apply_to_a_run_offered_fewer_than_n_tasks_a_minute() -> None:
    slow = row(evaluate(answered(30), half_busy_events(), workers=6, params={"rate_per_s": 0.05}), "throughput")
    assert slow["verdict"] == "n/a"
    assert slow["note"] == "offered 3.0 tasks/min, fewer than the 6 it asks"
    enough = row(evaluate(answered(30), half_busy_events(), workers=2, params={"rate_per_s": 1.0}), "throughput")
    assert enough["verdict"] == "pass"


def test_a_kpi_with_nothing_to_measure_says_so() -> None:
    table = evaluate(tasks_frame([]), events_frame([]), workers=1)
    assert set(table["verdict"]) == {"n/a"}
    assert all(note for note in table["note"])


# The run-size rule


def test_the_smallest_runs_that_tolerate_one_miss() -> None:
    assert min_size(0.01, percentile=False) == 100
    assert min_size(0.05, percentile=True) == 21
    assert tolerated(99, 0.01, percentile=False) == 0
    assert tolerated(250, 0.01, percentile=False) == 2
    assert tolerated(20, 0.05, percentile=True) == 0
    assert tolerated(21, 0.05, percentile=True) == 1


@pytest.mark.parametrize("n", range(1, 80))
def test_tolerated_misses_are_exactly_what_the_interpolated_p95_absorbs(n: int) -> None:
    limit = 15.0
    k = tolerated(n, 0.05, percentile=True)
    # k values far over the limit leave the p95 under it; one more puts it over.
    assert percentile([1.0] * (n - k) + [1000.0] * k, 95) < limit
    if k < n:
        assert percentile([1.0] * (n - k - 1) + [1000.0] * (k + 1), 95) >= limit


def test_a_small_run_with_no_failure_passes_flagged() -> None:
    availability = row(evaluate(answered(20), half_busy_events(), workers=2), "availability")
    assert availability["verdict"] == "pass"
    assert availability["note"] == "small run: 20 questions allow no failure (one is allowed from 100)"


def test_one_failure_in_a_small_run_is_not_a_failure_of_the_target() -> None:
    availability = row(evaluate(answered(20, failed=1), half_busy_events(), workers=2), "availability")
    assert availability["measured"] == pytest.approx(95.0)
    assert availability["verdict"] == "n/a" and availability["passed"] is None
    assert availability["note"] == "1 failure in 20 questions: too few to judge (one is allowed from 100)"


def test_two_failures_in_a_small_run_fail_it_and_one_in_a_large_run_passes() -> None:
    assert row(evaluate(answered(20, failed=2), half_busy_events(), workers=2), "availability")["verdict"] == "FAIL"
    large = row(evaluate(answered(150, failed=1), half_busy_events(), workers=2), "availability")
    assert large["verdict"] == "pass" and large["note"] == ""


def test_one_slow_task_decides_the_p95_of_a_small_run_and_is_not_judged() -> None:
    latency = row(evaluate(answered(10, slow=1), half_busy_events(), workers=2), "latency")
    assert latency["verdict"] == "n/a"
    assert latency["note"].startswith("1 task at 15 000 ms or more in 10 tasks: too few to judge")
    fast = row(evaluate(answered(10), half_busy_events(), workers=2), "latency")
    assert fast["verdict"] == "pass" and fast["note"].startswith("small run: 10 tasks allow no task")
    assert row(evaluate(answered(10, slow=2), half_busy_events(), workers=2), "latency")["verdict"] == "FAIL"
    large = row(evaluate(answered(30, slow=1), half_busy_events(), workers=2), "latency")
    assert large["verdict"] == "pass" and large["note"] == ""


# The terminal table and kpi.md


def test_the_terminal_table_is_compact_and_aligned() -> None:
    table = evaluate(answered(20, failed=1), half_busy_events(), workers=2, params={"target_utilization": 0.5})
    lines = kpi_table_text(table, "KPIs of run r1").splitlines()
    assert lines[0] == "KPIs of run r1"
    assert lines[1].split() == ["KPI", "Value", "Target", "Verdict"]
    assert [line.split()[0] for line in lines[2:]] == KPI_NAMES
    verdict_at = lines[1].index("Verdict")
    assert {line[verdict_at - 2 : verdict_at] for line in lines[2:]} == {"  "}
    utilization = next(line for line in lines if line.startswith("utilization"))
    assert "50.0%" in utilization and "n/a: offered load 50%, not normal" in utilization
    assert "Busy time" not in "\n".join(lines)  # the long explanations stay in kpi.md


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_print_kpi_table_draws_a_rich_table_on_a_terminal_and_plain_text_elsewhere() -> None:
    table = evaluate(answered(30), half_busy_events(), workers=2, params=NORMAL)
    plain = io.StringIO()
    print_kpi_table(table, "KPIs of run r1", plain)
    assert plain.getvalue() == kpi_table_text(table, "KPIs of run r1")
    terminal = Terminal()
    print_kpi_table(table, "KPIs of run r1", terminal)
    drawn = terminal.getvalue()
    assert "KPIs of run r1" in drawn and "11 000 ms" in drawn and "┃" in drawn


def test_kpi_md_keeps_the_explanations_and_states_the_rules() -> None:
    table = evaluate(answered(20, failed=1), half_busy_events(), workers=2, params={"target_utilization": 0.5})
    text = kpi_markdown(table, title="KPIs of run r1")
    assert "| availability | 95.0% | >= 99% | n/a: 1 failure in 20 questions" in text
    assert "Busy time over online time" in text
    assert "## How the verdicts are given" in text
    assert "100 questions for 99%, 21 tasks for a p95" in text
    assert list(compact_frame(table).index) == KPI_NAMES


# Charts


def test_the_saved_charts_name_their_run_and_count_in_whole_numbers(tmp_path: Any) -> None:
    run = Run("20261207-0100-readable", {"workers": 2}, {}, answered(5), half_busy_events())
    charts.save_charts(run, tmp_path)
    figures = [
        charts.throughput(run.tasks, run.workers, run_id=run.run_id),
        charts.latency_cdf(run.tasks, run_id=run.run_id),
        charts.utilization_timeline(run.worker_events, run.tasks, run_id=run.run_id),
        charts.queue_depth(run.tasks, run_id=run.run_id),
        charts.fault_timeline(run.tasks, run.worker_events, run_id=run.run_id),
        charts.scaling([run]),
        charts.latency_vs_load([Run("r2", NORMAL, {}, answered(3), half_busy_events())]),
    ]
    titles = [figure.axes[0].get_title(loc="right") for figure in figures]
    assert titles[:6] == ["run 20261207-0100-readable"] * 6
    assert titles[6] == "run r2"
    counts = [figures[0].axes[0].yaxis, figures[3].axes[0].yaxis, figures[4].axes[0].yaxis, figures[5].axes[0].xaxis]
    for axis in counts:
        locator = axis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer  # type: ignore[attr-defined]
    by_language = charts.by_language(run.tasks, run.worker_events, run_id=run.run_id)
    assert by_language.get_suptitle() == "run 20261207-0100-readable"


def test_targets_are_drawn_in_the_units_of_their_axes() -> None:
    cdf = charts.latency_cdf(answered(5)).axes[0]
    assert cdf.get_xlabel().endswith("(ms)")
    target = next(line for line in cdf.get_lines() if line.get_label() == "target 15 000 ms")
    assert list(target.get_xdata()) == [15_000, 15_000]  # type: ignore[arg-type]
    busy = charts.utilization_timeline(half_busy_events()).axes[1]
    band = next(p for p in busy.patches if p.get_label() == "target 70-80%")
    assert isinstance(band, Rectangle)
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((70, 80))  # on a percent axis


def test_many_runs_are_named_by_the_first_and_the_last() -> None:
    runs = [Run(f"r{i}", {"workers": 1 + i, "rate_per_s": 0.1}, {}, answered(3), half_busy_events()) for i in range(4)]
    assert charts.scaling(runs).axes[0].get_title(loc="right") == "4 runs: r0 ... r3"
