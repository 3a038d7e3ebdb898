"""The fault tables in docs/faults.md and README.md are what the fault tests recorded."""

from __future__ import annotations

import ast
from pathlib import Path

from memsweep.testing.faults_table import current_block, doc_table, load_rows, readme_table

REPO = Path(__file__).resolve().parents[2]
FAULTS_JSON = REPO / "docs" / "faults.json"
FAULT_TESTS = REPO / "tests" / "collect" / "test_faults.py"


def _declared_cases() -> list[str]:
    """The keys of FAULT_CASES in the fault tests, in order (read from the source)."""
    tree = ast.parse(FAULT_TESTS.read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "FAULT_CASES":
            assert isinstance(node.value, ast.Dict)
            return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
    raise AssertionError("FAULT_CASES not found")


def test_the_committed_fault_tables_are_the_rendering_of_what_the_tests_recorded() -> None:
    rows = load_rows(FAULTS_JSON)
    assert (REPO / "docs" / "faults.md").read_text().count(doc_table(rows)) == 1, (
        "docs/faults.md's table is not docs/faults.json's: run make faults-doc"
    )
    assert current_block((REPO / "README.md").read_text()) == readme_table(rows), (
        "README's fault table is not docs/faults.json's: run make faults-doc"
    )


def test_every_declared_case_was_recorded_by_a_test_that_exists() -> None:
    rows = load_rows(FAULTS_JSON)
    # every case the tests declare has a row, in the declared order, and no other row
    assert [row.case for row in rows] == _declared_cases()
    defined = {
        node.name
        for node in ast.parse(FAULT_TESTS.read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    for row in rows:
        assert set(row.tests) <= defined, (row.case, set(row.tests) - defined)
    # (a row no passing test recorded stays, saying so: see faults_table.NOT_MEASURED)
