"""The seven notebooks, executed top to bottom by papermill with small parameters against real systems.

Each notebook records what it saw in a JSON file (its `record_to` parameter); the tests check those figures
and that the charts were drawn (PNG outputs in the executed notebook).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import papermill
import pytest

from lab.analysis.kpi import KPI_NAMES
from lab.bench.language_figures import available_languages
from lab.runs import Run, list_runs
from lab.system.workers import LANGUAGES
from tests.conftest import IN_CI, require_mosquitto

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
pytestmark = pytest.mark.timeout(600)


def execute(name: str, tmp_path: Path, **parameters: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run notebook `name` with `parameters` (plus record_to and runs_root in tmp_path); return the record and
    the executed notebook."""
    require_mosquitto()
    record = tmp_path / "record.json"
    output = tmp_path / f"{name}.out.ipynb"
    parameters = {"record_to": str(record), **parameters}
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(NOTEBOOKS),
        progress_bar=False,
    )
    return json.loads(record.read_text()), json.loads(output.read_text())


def images(book: dict[str, Any]) -> int:
    """How many PNG images the executed notebook (as its JSON) displayed."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in book["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )


def test_every_notebook_has_a_parameters_cell() -> None:
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [b.stem for b in books] == [
        "01_quickstart",
        "02_load_test",
        "03_kpi_report",
        "04_scaling",
        "05_faults",
        "06_languages",
        "07_autoscaling",
        "08_failover",
    ]
    for path in books:
        book = json.loads(path.read_text())
        tagged = [c for c in book["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, path.name
        assert "record_to = None" in "".join(tagged[0]["source"]), path.name


def test_quickstart_answers_questions_in_the_chat_panel(tmp_path: Path) -> None:
    questions = ["What is MQTT?", "What is gRPC?", "What is Socket.IO?"]
    record, book = execute(
        "01_quickstart", tmp_path, workers=2, work_seconds=0.3, questions=questions, stop_at_end=True
    )
    assert record["answers"] == 3
    assert record["answered"] == 3
    assert record["status_workers"] == 2
    assert 1 <= len(record["workers_used"]) <= 2
    assert all(ms >= 300 for ms in record["processing_time_ms"])
    # The test asked for the stop that Run All leaves to the user: the system it started is gone.
    last = [c for c in book["cells"] if c["cell_type"] == "code"][-1]
    printed = "".join("".join(o.get("text", "")) for o in last["outputs"])
    assert printed.startswith("stopped: the panel is closed and the system is stopped"), printed


class _Stoppable:
    """Stands in for the panel and the cluster in the quickstart's last cell: records what was called."""

    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    def close(self) -> None:
        self.calls.append(f"{self.name}.close")

    def stop(self) -> None:
        self.calls.append(f"{self.name}.stop")


@pytest.mark.parametrize(("stop_at_end", "expected"), [(False, []), (True, ["panel.close", "cluster.stop"])])
def test_quickstart_stops_the_system_only_when_asked(stop_at_end: bool, expected: list[str]) -> None:
    book = json.loads((NOTEBOOKS / "01_quickstart.ipynb").read_text())
    [parameters] = [c for c in book["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert "stop_at_end = False" in "".join(parameters["source"])  # Run All leaves it running
    last = "".join([c for c in book["cells"] if c["cell_type"] == "code"][-1]["source"])
    calls: list[str] = []
    cell_globals = {"stop_at_end": stop_at_end, "chat_url": "http://127.0.0.1:1"}
    cell_globals |= {"panel": _Stoppable(calls, "panel"), "cluster": _Stoppable(calls, "cluster")}
    exec(last, cell_globals)
    assert calls == expected


def test_load_test_saves_a_run_with_every_question_answered(tmp_path: Path) -> None:
    record, book = execute(
        "02_load_test",
        tmp_path,
        workers=2,
        work_seconds=0.5,
        utilization=0.6,
        duration_s=10.0,
        users=5,
        runs_root=str(tmp_path / "runs"),
    )
    assert record["sent"] > 0
    assert record["answered"] == record["sent"]
    assert record["unanswered"] == 0
    assert record["kpis"] == list(KPI_NAMES)
    run = Run.load(Path(record["run_dir"]))
    assert len(run.tasks) == record["sent"]
    assert sorted(p.name for p in (Path(record["run_dir"]) / "charts").glob("*.png"))
    assert images(book) >= 4
    # The live stats: a widget while it ran (a browser would draw it), and its last numbers as text.
    outputs = [o for cell in book["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    text = "".join("".join(o.get("text", [])) for o in outputs if o.get("name") == "stdout")
    assert f"sent {record['sent']}/{record['sent']} · answered {record['sent']} · failed 0 · in flight 0" in text


def test_kpi_report_predicts_and_measures_the_wait(tmp_path: Path) -> None:
    record, book = execute(
        "03_kpi_report",
        tmp_path,
        workers=2,
        work_seconds=0.5,
        utilization=0.5,
        duration_s=16.0,
        seed=0,  # 9 questions, 56% of capacity: a stable load, so both predictions exist
        users=5,
        runs_root=str(tmp_path / "runs"),
    )
    assert record["answered"] > 0
    prediction = record["prediction"]
    assert prediction["mmc_mean_wait_s"] >= prediction["mgc_mean_wait_s"] >= 0
    assert prediction["measured_mean_wait_s"] >= 0
    assert 0 < prediction["utilization"] < 1
    assert record["kpis"] == list(KPI_NAMES)
    assert images(book) >= 4
    # Reporting on the saved run again, by id, gives the same run.
    again, _ = execute("03_kpi_report", tmp_path, run_id=record["run_id"], runs_root=str(tmp_path / "runs"))
    assert again["run_id"] == record["run_id"]
    assert again["prediction"] == prediction


def test_scaling_throughput_grows_with_workers(tmp_path: Path) -> None:
    record, book = execute(
        "04_scaling",
        tmp_path,
        worker_counts=[1, 2],
        loads=[0.4, 0.8],
        load_workers=2,
        work_seconds=0.3,
        model_latency_ms=50.0,
        duration_s=8.0,
        users=5,
        runs_root=str(tmp_path / "runs"),
    )
    assert record["workers"] == [1, 2]
    # Offered 120% of capacity, two workers answer more per minute than one.
    one, two = record["throughput_per_min"]
    assert two > one * 1.3
    assert len(record["load_runs"]) == 2
    assert len(list_runs(tmp_path / "runs")) == 4
    assert images(book) >= 4


def test_faults_lose_no_accepted_question(tmp_path: Path) -> None:
    record, book = execute(
        "05_faults",
        tmp_path,
        workers=3,
        work_seconds=0.5,
        utilization=0.5,
        duration_s=20.0,
        users=8,
        fault_times={"kill worker": 3.0, "restart master": 7.0, "restart broker": 11.0, "kill another worker": 15.0},
        runs_root=str(tmp_path / "runs"),
    )
    assert [f["action"] for f in record["faults"]] == ["kill worker", "restart master", "restart broker", "kill worker"]
    assert not [f for f in record["faults"] if "error" in f]
    assert record["acknowledged"] > 0
    assert record["answered"] == record["acknowledged"]
    assert record["unanswered"] == 0
    assert record["duplicates"] == 0
    assert images(book) >= 3


def test_failover_loses_no_accepted_question_and_deposes_the_paused_leader(tmp_path: Path) -> None:
    record, book = execute(
        "08_failover",
        tmp_path,
        workers=3,
        work_seconds=0.5,
        utilization=0.5,
        duration_s=32.0,
        users=8,
        kill_leader_at_s=5.0,
        pause_leader_at_s=16.0,
        pause_s=11.0,
        runs_root=str(tmp_path / "runs"),
    )
    assert [f["action"] for f in record["faults"]] == ["kill leader", "pause leader 11 s"]
    assert not [f for f in record["faults"] if "error" in f]
    # Each fault found a new leader, with a newer epoch, while the load ran.
    assert all(f["leader_again_s"] is not None and f["leader_again_s"] < 15 for f in record["faults"])
    assert record["epochs"][1] > record["epochs"][0]
    assert record["acknowledged"] > 0
    assert record["answered"] == record["acknowledged"]
    assert record["unanswered"] == 0
    assert record["duplicates"] == 0
    assert [name for name, code in record["restarts"] if code == 3] == [record["faults"][1]["target"]]  # deposed
    assert images(book) >= 2


def test_languages_compares_the_workers_that_are_built(tmp_path: Path) -> None:
    built, unbuilt = available_languages(LANGUAGES)
    if IN_CI:  # CI builds every worker (`make workers`): all three must be compared
        assert unbuilt == {}, unbuilt
    record, book = execute(
        "06_languages",
        tmp_path,
        repeats=2,
        clients=4,
        seconds=2.0,
        warmup=1.0,
        per_language=1,
        questions=9,
        work_seconds=0.1,
        kpi_duration_s=6.0,
        kpi_work_seconds=0.3,
        kpi_utilization=0.5,
        runs_root=str(tmp_path / "runs"),
    )
    # Locally an unbuilt worker is skipped with a note (in the record and the notebook's output), not an error.
    assert record["languages"] == built and set(record["skipped"]) == set(unbuilt)
    assert set(record["start_to_first_task_ms"]) == set(built)
    assert set(record["targets"]) == {"go", "java"} & set(built)
    for language in built:
        assert record["start_to_first_task_ms"][language] > 0
        assert record["steady"][language]["cpu_ms_per_task"] > 0 and record["steady"][language]["rss_mib"] > 1
        assert record["processing_p50_ms"][language] >= 100
    mixed = record["mixed"]
    assert mixed["exactly_once"] is True and mixed["answered"] == 9 and mixed["duplicates"] == 0
    assert len(mixed["tasks_per_worker"]) == len(built)
    assert record["kpis"] == list(KPI_NAMES)
    assert [row["language"] for row in record["by_language"]] == sorted(built)
    assert Run.load(Path(record["run_dir"])).params["fleet"] == dict.fromkeys(built, 1)
    assert images(book) >= 2


def test_autoscaling_follows_a_step_and_costs_less_than_the_fixed_fleet(tmp_path: Path) -> None:
    record, book = execute(
        "07_autoscaling",
        tmp_path,
        work_seconds=1.0,
        model_latency_ms=50.0,
        low_rate=0.5,
        high_rate=2.5,
        phases_s=[10.0, 15.0, 25.0],
        ramp_from=0.5,
        ramp_to=3.0,
        ramp_s=20.0,
        fixed_workers=4,
        autoscale=[1, 4],
        autoscaler={"cooldown_s": 2.0, "scale_down_window_s": 6.0, "interval_s": 0.5, "measure_window_s": 4.0},
        latency_target_s=5.0,
        users=10,
        runs_root=str(tmp_path / "runs"),
    )
    assert record["fleets"] == ["fixed 4", "auto 1..4", "fixed 4", "auto 1..4"]
    assert record["loads"] == ["step", "step", "ramp", "ramp"]
    # Every question answered, once, by every fleet.
    assert record["answered"] == record["questions"] and min(record["questions"]) > 10
    assert record["duplicates"] == [0, 0, 0, 0]
    # The fixed fleet never changes; the autoscaled one went up for the step and came back down after it.
    assert record["decisions"][0] == record["decisions"][2] == 0
    assert {"up", "down"} <= set(record["directions"][1])
    assert 1 < record["peak_workers"][1] <= 4
    assert record["scale_up_delay_s"][1] < 15
    # Following the load costs fewer worker-seconds than keeping the peak's fleet all along.
    assert record["worker_seconds"][1] < record["worker_seconds"][0]
    assert len(list_runs(tmp_path / "runs")) == 4
    assert images(book) >= 5  # four runs over time, and the comparison
