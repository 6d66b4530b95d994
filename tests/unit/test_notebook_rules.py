"""Notebooks are for exploration and communication, lab/ for repetition: no notebook defines a function or a
class (or names a lambda); what a notebook would define belongs in lab/, where it is typed and tested."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(cell index, Python source without IPython magics and shell lines) of each code cell."""
    book = json.loads(path.read_text())
    cells = []
    for index, cell in enumerate(book["cells"]):
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()
            cells.append((index, "\n".join(x for x in lines if not x.lstrip().startswith(("%", "!")))))
    return cells


def definitions(source: str) -> list[str]:
    """What `source` defines that a notebook must not: functions, classes, and lambdas bound to a name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(f"{type(node).__name__} {node.name} (line {node.lineno})")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Lambda):
            found.append(f"a named lambda (line {node.lineno})")
    return found


def test_the_rule_catches_a_def_a_class_and_a_named_lambda() -> None:
    source = "def f():\n    pass\nclass C:\n    pass\ng = lambda x: x\nsorted([2, 1], key=lambda x: x)\n"
    assert definitions(source) == ["FunctionDef f (line 1)", "ClassDef C (line 3)", "a named lambda (line 5)"]


def test_there_are_notebooks_to_check() -> None:
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_defines_a_function_or_a_class(path: Path) -> None:
    found = {index: defined for index, source in code_cells(path) if (defined := definitions(source))}
    assert not found, f"{path.name} defines {found}: move it into lab/"
